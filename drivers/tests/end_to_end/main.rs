//! End-to-end tests of the MT-SICS driver stack against the simulators, over in-memory pipes,
//! a real pseudo-terminal and TCP. One test binary, so the simulators are built once.

// `cfg(test)` marks the helpers as test code for clippy's allow-unwrap-in-tests.
#[cfg(test)]
mod client;
#[cfg(test)]
mod device;
