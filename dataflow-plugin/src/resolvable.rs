//! `Resolvable`: what the `resolve` operator accepts (proxies and `Proxied` records).

use std::sync::Arc;

use proxy_core::{Codec, Prefetch, Proxy};
use timely::ExchangeData;

use crate::error::Error;
use crate::proxied::Proxied;

/// A record that stands for a value that may have to be fetched: [`Proxy<D>`] or
/// [`Proxied<D>`]. Implemented by this crate; [`Resolve`](crate::Resolve) accepts any of them.
pub trait Resolvable: ExchangeData + Clone {
    /// The value the record stands for.
    type Value: Clone + 'static;

    /// Starts fetching, in the background, the values of those `records` not yet at hand;
    /// `notify` is called from the fetch threads as batches finish.
    fn prefetch(records: &[Self], notify: Arc<dyn Fn() + Send + Sync>) -> Prefetch;

    /// Whether the value is at hand (taking it will not wait).
    fn is_ready(&self) -> bool;

    /// The value, fetching it now if needed.
    fn into_value(self) -> Result<Self::Value, Error>;
}

/// The value behind a proxy: moved out when this was its last holder, cloned otherwise.
fn take_value<D, C>(proxy: Proxy<D, C>) -> Result<D, Error>
where
    D: Clone + Send + Sync + 'static,
    C: Codec<D>,
{
    let value = Proxy::get(&proxy).map_err(|source| Error::Resolve {
        store: Proxy::store_name(&proxy).to_string(),
        key: Proxy::key(&proxy).clone(),
        source,
    })?;
    drop(proxy);
    Ok(Arc::try_unwrap(value).unwrap_or_else(|shared| (*shared).clone()))
}

impl<D, C> Resolvable for Proxy<D, C>
where
    D: Clone + Send + Sync + 'static,
    C: Codec<D>,
    Proxy<D, C>: ExchangeData,
{
    type Value = D;

    fn prefetch(records: &[Self], notify: Arc<dyn Fn() + Send + Sync>) -> Prefetch {
        Proxy::prefetch(records, Some(notify))
    }

    fn is_ready(&self) -> bool {
        Proxy::is_resolved(self)
    }

    fn into_value(self) -> Result<D, Error> {
        take_value(self)
    }
}

impl<D, C> Resolvable for Proxied<D, C>
where
    D: ExchangeData + Clone + Sync,
    C: Codec<D>,
    Proxy<D, C>: ExchangeData,
{
    type Value = D;

    fn prefetch(records: &[Self], notify: Arc<dyn Fn() + Send + Sync>) -> Prefetch {
        Proxy::prefetch(records.iter().filter_map(Proxied::as_proxy), Some(notify))
    }

    fn is_ready(&self) -> bool {
        match self {
            Proxied::Inline(_) => true,
            Proxied::Stored(p) => Proxy::is_resolved(p),
        }
    }

    fn into_value(self) -> Result<D, Error> {
        match self {
            Proxied::Inline(d) => Ok(d),
            Proxied::Stored(p) => take_value(p),
        }
    }
}
