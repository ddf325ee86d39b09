//! Polling with deadlines: every wait of the suites ends either when the awaited state is seen
//! or with an error naming what was awaited and the last state seen. Nothing sleeps and hopes.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// How often conditions are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Ok(value)`, and returns that value.
/// `Err(state)` means "not yet"; the last such state is reported when `timeout` passes.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(state) => state,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_check_passes() {
        let mut calls = 0;
        let value = until("three calls", Duration::from_secs(10), || {
            calls += 1;
            let n = calls;
            async move {
                if n >= 3 {
                    Ok(n)
                } else {
                    Err(format!("call {n}"))
                }
            }
        })
        .await
        .expect("passes");
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn times_out_with_the_last_state() {
        let error = until("never", Duration::from_millis(250), || async {
            Err::<(), _>("still waiting".to_owned())
        })
        .await
        .expect_err("times out");
        let message = error.to_string();
        assert!(message.contains("never"), "{message}");
        assert!(message.contains("still waiting"), "{message}");
    }
}
