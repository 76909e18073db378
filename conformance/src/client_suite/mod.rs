//! `chorus conform-client`: the suite plays a scripted Chorus v1 server and grades the client
//! library under test, which it drives through an adapter process speaking the driver
//! contract ([`driver`], conformance/CLIENT-DRIVER.md).

pub mod driver;
