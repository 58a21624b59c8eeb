//! End-to-end tests of the driver stack (every protocol) against the simulators, over in-memory pipes,
//! a real pseudo-terminal and TCP. One test binary, so the simulators are built once.

// `cfg(test)` marks the helpers as test code for clippy's allow-unwrap-in-tests.
#[cfg(test)]
mod client;
#[cfg(test)]
mod device;
#[cfg(test)]
mod protocols;

/// Waits up to `WAIT_MS` for the device status to satisfy `condition`; shared by the device
/// and protocol tests.
#[cfg(test)]
pub(crate) async fn wait_for(
    status: &mut tokio::sync::watch::Receiver<valeo_drivers::scale::device::ScaleStatus>,
    what: &str,
    condition: impl FnMut(&valeo_drivers::scale::device::ScaleStatus) -> bool,
) -> valeo_drivers::scale::device::ScaleStatus {
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(WAIT_MS),
        status.wait_for(condition),
    )
    .await
    .map(|result| result.map(|current| current.clone()));
    match waited {
        Ok(Ok(current)) => current,
        Ok(Err(_)) => panic!("device task ended while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}: {:?}", *status.borrow()),
    }
}

/// Upper bound for any status condition to become true in these tests.
#[cfg(test)]
pub(crate) const WAIT_MS: u64 = 5000;
