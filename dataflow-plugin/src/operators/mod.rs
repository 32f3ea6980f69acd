//! The operators, one trait per file.

mod auto_proxy;
mod proxy_records;
mod release_proxies;
mod resolve;

pub use auto_proxy::AutoProxy;
pub use proxy_records::ProxyRecords;
pub use release_proxies::ReleaseProxies;
pub use resolve::Resolve;
