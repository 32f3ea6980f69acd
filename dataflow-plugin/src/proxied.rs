//! `Proxied<D>`: a record kept inline or behind a proxy.

use std::fmt;
use std::ops::Deref;

use proxy_core::{Codec, DefaultCodec, Proxy};
use serde::{Deserialize, Serialize};

/// A record that is either carried inline or stored behind a [`Proxy`], as chosen by
/// [`auto_proxy`](crate::AutoProxy::auto_proxy). It derefs to `D` either way.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "D: Serialize", deserialize = "D: Deserialize<'de>"))]
pub enum Proxied<D, C = DefaultCodec> {
    /// A small record, carried as it is.
    Inline(D),
    /// A large record, stored away; only its proxy travels.
    Stored(Proxy<D, C>),
}

impl<D, C> Proxied<D, C> {
    /// Whether the record travels behind a proxy.
    pub fn is_stored(&self) -> bool {
        matches!(self, Proxied::Stored(_))
    }

    /// The proxy, for a stored record.
    pub fn as_proxy(&self) -> Option<&Proxy<D, C>> {
        match self {
            Proxied::Inline(_) => None,
            Proxied::Stored(proxy) => Some(proxy),
        }
    }
}

impl<D: Clone, C> Clone for Proxied<D, C> {
    fn clone(&self) -> Self {
        match self {
            Proxied::Inline(d) => Proxied::Inline(d.clone()),
            Proxied::Stored(p) => Proxied::Stored(p.clone()),
        }
    }
}

impl<D: fmt::Debug, C> fmt::Debug for Proxied<D, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxied::Inline(d) => f.debug_tuple("Inline").field(d).finish(),
            Proxied::Stored(p) => f.debug_tuple("Stored").field(p).finish(),
        }
    }
}

impl<D, C> Deref for Proxied<D, C>
where
    D: Send + Sync + 'static,
    C: Codec<D>,
{
    type Target = D;

    /// The record; a stored one is fetched on first use (see [`Proxy`]'s panics).
    fn deref(&self) -> &D {
        match self {
            Proxied::Inline(d) => d,
            Proxied::Stored(p) => p,
        }
    }
}
