//! `--web.max-requests`: how many metrics requests are answered at once; one more is
//! refused with 503 at once (promhttp's `MaxRequestsInFlight`), never queued.

use std::sync::Arc;

use hyper::{Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body::{Body, error};

/// The permits of concurrent metrics requests.
pub(super) struct RequestLimit {
    max: usize,
    /// `None`: no limit (`--web.max-requests 0`).
    permits: Option<Arc<Semaphore>>,
}

impl RequestLimit {
    pub(super) fn new(max: usize) -> RequestLimit {
        RequestLimit {
            max,
            permits: (max > 0).then(|| Arc::new(Semaphore::new(max))),
        }
    }

    /// A permit, held while the answer is built (`None` without a limit), or [`Busy`]
    /// when `max` requests are in flight.
    pub(super) fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, Busy> {
        let Some(permits) = &self.permits else {
            return Ok(None);
        };
        permits
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| Busy { max: self.max })
    }
}

/// `max` metrics requests are in flight already.
#[derive(Debug)]
pub(super) struct Busy {
    max: usize,
}

impl Busy {
    /// The answer: 503, naming the flag.
    pub(super) fn answer(&self) -> Response<Body> {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "more than {} concurrent metrics requests (--web.max-requests)",
                self.max
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_past_the_limit_is_refused_until_one_is_answered() {
        let limit = RequestLimit::new(2);
        let first = limit.admit().unwrap();
        let second = limit.admit().unwrap();
        assert!(first.is_some() && second.is_some());
        let refused = limit.admit().unwrap_err().answer();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        let third = limit.admit().unwrap();
        assert!(third.is_some());
        assert!(limit.admit().is_err());
        drop((second, third));
        assert!(limit.admit().is_ok());
    }

    #[test]
    fn zero_is_no_limit() {
        let limit = RequestLimit::new(0);
        let held: Vec<_> = (0..1000).map(|_| limit.admit().unwrap()).collect();
        assert!(held.iter().all(Option::is_none));
    }
}
