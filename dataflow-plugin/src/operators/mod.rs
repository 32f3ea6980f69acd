//! The operators, one trait per file.

mod auto_proxy;
mod proxy_in_place;
mod proxy_records;
mod release_proxies;
mod resolve;
mod stream_sink;
mod stream_source;

pub use auto_proxy::AutoProxy;
pub use proxy_in_place::ProxyInPlace;
pub use proxy_records::ProxyRecords;
pub use release_proxies::ReleaseProxies;
pub use resolve::Resolve;
pub use stream_sink::StreamSink;
pub use stream_source::StreamSource;
