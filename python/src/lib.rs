//! `proxystore_rs._native`: the Rust connectors for Python.
//!
//! This is the compiled half of the `proxystore_rs` package (see `python/README.md`). It
//! exposes one class, `NativeConnector`, over any connector of `proxy-core`, and two buffer
//! types: `Buffer` (the bytes a get returned, shown to Python without a copy) and
//! `WriteBuf` (a writable buffer a producer fills in place before storing it). The Python
//! half (`proxystore_rs/__init__.py`) wraps them in classes that satisfy ProxyStore 1.1's
//! `Connector` protocol; keys cross this boundary as their text form (`Key`'s `Display`).
//!
//! Every call that may wait (the network, the disk) releases the interpreter lock, so other
//! Python threads run meanwhile.

use std::ffi::{c_int, c_void, CString};
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proxy_core::{
    Connector, ConnectorConfig, Error, FileConnector, Key, WriteBuffer, ZmqConnector, ZmqOptions,
};
use pyo3::exceptions::{PyBufferError, PyException, PyMemoryError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList};
use pyo3::{create_exception, ffi};

create_exception!(
    _native,
    NativeError,
    PyException,
    "An error of the Rust connector: args are (kind, message). The Python package turns it \
     into one of its exception classes."
);

/// The Python exception for a Rust error: its kind's name (the `ErrorKind` variant) and its
/// message (which never holds a secret: the Rust errors do not).
fn to_py(error: Error) -> PyErr {
    NativeError::new_err((format!("{:?}", error.kind()), error.to_string()))
}

fn config_error(message: impl Into<String>) -> PyErr {
    NativeError::new_err(("Config".to_string(), message.into()))
}

fn parse_key(text: &str) -> PyResult<Key> {
    text.parse::<Key>().map_err(to_py)
}

/// One connector of `proxy-core`, any kind, shared by every Python object that holds it.
#[pyclass(module = "proxystore_rs._native", frozen)]
struct NativeConnector {
    inner: Arc<dyn Connector>,
    /// The ZeroMQ connector itself, for what only it has (its endpoint, its counters).
    zmq: Option<ZmqConnector>,
}

/// The options of a ZeroMQ connector: what the environment (`PROXYSTORE_ZMQ_*`,
/// `PROXYSTORE_SECRET*`) or the defaults say, with the keyword arguments from Python
/// applied in their order (`None` values are skipped); an unknown name is a configuration
/// error naming the known ones ([`ZMQ_ARGS`]).
fn zmq_options(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<ZmqOptions> {
    let mut options = ZmqOptions::from_env().map_err(to_py)?;
    let Some(kwargs) = kwargs else {
        return Ok(options);
    };
    for (name, value) in kwargs.iter() {
        let name: String = name.extract()?;
        if value.is_none() {
            continue;
        }
        options = match name.as_str() {
            "interface" => options.with_interface(value.extract::<String>()?),
            "address" => options.with_address(value.extract::<String>()?),
            "port" => options.with_port(value.extract()?),
            "port_range" => {
                let (first, last) = value.extract()?;
                options.with_port_range(first, last)
            }
            "timeout" => {
                let seconds: f64 = value.extract()?;
                let timeout = Duration::try_from_secs_f64(seconds).map_err(|_| {
                    config_error(format!("timeout {seconds} is not a duration in seconds"))
                })?;
                options.with_timeout(timeout)
            }
            "secret" => options.with_secret(value.extract::<Vec<u8>>()?),
            "secret_file" => options.with_secret_file(value.extract::<PathBuf>()?),
            "insecure" if value.extract::<bool>()? => options.insecure(),
            "max_bytes" => options.with_max_bytes(value.extract()?),
            "max_message_size" => options.with_max_message_size(value.extract()?),
            "shared_memory" => options.with_shared_memory(value.extract()?),
            "shared_memory_capacity" => options.with_shared_memory_capacity(value.extract()?),
            "remote" => options.with_remote(value.extract::<String>()?),
            "client_only" if value.extract::<bool>()? => options.with_client_only(),
            "insecure" | "client_only" => options,
            _ => {
                return Err(config_error(format!(
                    "unknown ZeroMQ connector option `{name}` (known: {})",
                    ZMQ_ARGS.join(", ")
                )))
            }
        };
    }
    Ok(options)
}

/// The bytes of a Python object, for a put: `bytes` and this package's [`Buffer`]s are
/// immutable and are stored without a copy; any other object with the buffer protocol
/// (`bytearray`, `memoryview`, numpy arrays) is copied once, since a write to it after the
/// put would otherwise change a stored, write-once object.
fn bytes_of(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(Bytes::from_owner(PyBackedBytes::from(bytes.clone())));
    }
    if let Ok(buffer) = obj.cast::<Buffer>() {
        return Ok(buffer.get().bytes.clone());
    }
    let buffer = pyo3::buffer::PyBuffer::<u8>::get(obj)?;
    Ok(Bytes::from(buffer.to_vec(obj.py())?))
}

#[pymethods]
impl NativeConnector {
    /// A ZeroMQ peer (`kwargs`: see `zmq_options`), its server started unless it is a
    /// client or puts to a remote peer.
    #[staticmethod]
    #[pyo3(signature = (**kwargs))]
    fn zmq(py: Python<'_>, kwargs: Option<Bound<'_, PyDict>>) -> PyResult<Self> {
        let options = zmq_options(kwargs.as_ref())?;
        let connector = py.detach(|| options.build()).map_err(to_py)?;
        Ok(NativeConnector {
            inner: Arc::new(connector.clone()),
            zmq: Some(connector),
        })
    }

    /// A file connector over `dir` (created if missing).
    #[staticmethod]
    #[pyo3(signature = (dir, clear_on_close = true))]
    fn file(py: Python<'_>, dir: PathBuf, clear_on_close: bool) -> PyResult<Self> {
        let connector = py
            .detach(|| FileConnector::create(&dir))
            .map_err(to_py)?
            .with_clear_on_close(clear_on_close);
        Ok(NativeConnector {
            inner: Arc::new(connector),
            zmq: None,
        })
    }

    /// The connector a configuration (from `config()`, in any process) describes.
    #[staticmethod]
    fn from_config(py: Python<'_>, config: &str) -> PyResult<Self> {
        let config: ConnectorConfig = serde_json::from_str(config)
            .map_err(|e| config_error(format!("not a connector configuration: {e}")))?;
        let zmq = match &config {
            ConnectorConfig::Zmq(zmq) => Some(py.detach(|| zmq.build()).map_err(to_py)?),
            _ => None,
        };
        let inner = match &zmq {
            Some(zmq) => Arc::new(zmq.clone()) as Arc<dyn Connector>,
            None => py.detach(|| config.build()).map_err(to_py)?,
        };
        Ok(NativeConnector { inner, zmq })
    }

    /// The configuration that rebuilds this connector, as JSON text (no secret in it).
    fn config(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner.config())
            .map_err(|e| config_error(format!("configuration not serializable: {e}")))
    }

    /// Stores the bytes of `data`; returns the key's text.
    fn put(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
        let bytes = bytes_of(data)?;
        let key = py.detach(|| self.inner.put(bytes)).map_err(to_py)?;
        Ok(key.to_string())
    }

    /// Stores every element of `data`; returns their keys' texts in order.
    fn put_batch(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let mut batch = Vec::new();
        for item in data.try_iter()? {
            batch.push(bytes_of(&item?)?);
        }
        let keys = py.detach(|| self.inner.put_batch(batch)).map_err(to_py)?;
        Ok(keys.iter().map(Key::to_string).collect())
    }

    /// The object under `key`, or `None` if nothing is stored there.
    fn get(&self, py: Python<'_>, key: &str) -> PyResult<Option<Buffer>> {
        let key = parse_key(key)?;
        let found = py.detach(|| self.inner.get(&key)).map_err(to_py)?;
        Ok(found.map(Buffer::new))
    }

    /// The objects under `keys` (`None` where nothing is stored), in order.
    fn get_batch<'py>(&self, py: Python<'py>, keys: Vec<String>) -> PyResult<Bound<'py, PyList>> {
        let keys = keys
            .iter()
            .map(|k| parse_key(k))
            .collect::<PyResult<Vec<_>>>()?;
        let found = py.detach(|| self.inner.get_batch(&keys)).map_err(to_py)?;
        PyList::new(py, found.into_iter().map(|b| b.map(Buffer::new)))
    }

    /// Whether an object is stored under `key`.
    fn exists(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let key = parse_key(key)?;
        py.detach(|| self.inner.exists(&key)).map_err(to_py)
    }

    /// Removes the object under `key` (nothing stored there is not an error).
    fn evict(&self, py: Python<'_>, key: &str) -> PyResult<()> {
        let key = parse_key(key)?;
        py.detach(|| self.inner.evict(&key)).map_err(to_py)
    }

    /// A fresh key under which `set` stores one object later (a future's key).
    fn new_key(&self, py: Python<'_>) -> PyResult<String> {
        let key = py.detach(|| self.inner.new_key()).map_err(to_py)?;
        Ok(key.to_string())
    }

    /// Stores `data` under `key`, a key from `new_key` (write-once: a second set fails with
    /// kind `AlreadyExists`).
    fn set(&self, py: Python<'_>, key: &str, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = parse_key(key)?;
        let bytes = bytes_of(data)?;
        py.detach(|| self.inner.put_at(&key, bytes)).map_err(to_py)
    }

    /// A writable buffer of `len` bytes that `put_buffer` stores without another copy (on a
    /// ZeroMQ peer with shared memory, a slot of its shared-memory arena).
    fn alloc(&self, py: Python<'_>, len: usize) -> PyResult<WriteBuf> {
        // A size the allocator cannot give is an error here, not an abort of the
        // interpreter in the connector's allocation (the probe takes address space only).
        let mut probe: Vec<u8> = Vec::new();
        probe.try_reserve_exact(len).map_err(|e| {
            PyMemoryError::new_err(format!(
                "cannot allocate a write buffer of {len} bytes: {e}"
            ))
        })?;
        drop(probe);
        let buffer = py.detach(|| self.inner.alloc(len)).map_err(to_py)?;
        Ok(WriteBuf {
            state: Mutex::new(Some(buffer)),
            exports: AtomicUsize::new(0),
        })
    }

    /// Stores a buffer from `alloc`, filled; returns its key's text. Refused while a view of
    /// the buffer (a `memoryview`, a numpy array over it) is still alive: the stored object
    /// must not change afterwards.
    fn put_buffer(&self, py: Python<'_>, buffer: &Bound<'_, WriteBuf>) -> PyResult<String> {
        let buffer = buffer.get().take()?;
        let key = py.detach(|| self.inner.put_buffer(buffer)).map_err(to_py)?;
        Ok(key.to_string())
    }

    /// Closes the connector (a ZeroMQ peer stops serving; a file connector made with
    /// `clear_on_close` deletes its directory). Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.close()).map_err(to_py)
    }

    /// The endpoint of this ZeroMQ peer's server (`tcp://host:port`), once started.
    #[getter]
    fn endpoint(&self) -> Option<String> {
        self.zmq
            .as_ref()
            .and_then(|z| z.endpoint().map(str::to_string))
    }

    /// Makes room in this ZeroMQ peer's shared memory for `count` objects of `len` bytes
    /// now, and returns how many slots are ready (0 for a file connector, with shared
    /// memory off, below its threshold, or for a client).
    fn prewarm_shared_memory(&self, py: Python<'_>, len: usize, count: u32) -> PyResult<u32> {
        match &self.zmq {
            Some(zmq) => py
                .detach(|| zmq.prewarm_shared_memory(len, count))
                .map_err(to_py),
            None => Ok(0),
        }
    }

    /// Gets of other peers' objects this ZeroMQ connector answered from shared memory.
    #[getter]
    fn mapped_reads(&self) -> u64 {
        self.zmq.as_ref().map_or(0, ZmqConnector::mapped_reads)
    }

    /// How many objects this connector holds, where it can tell.
    #[getter]
    fn object_count(&self) -> Option<usize> {
        self.inner.object_count()
    }

    fn __repr__(&self) -> String {
        match self.endpoint() {
            Some(endpoint) => format!("NativeConnector(zmq, {endpoint})"),
            None => format!("NativeConnector({:?})", self.inner.config()),
        }
    }
}

/// The option names `NativeConnector.zmq` accepts.
const ZMQ_ARGS: &[&str] = &[
    "interface",
    "address",
    "port",
    "port_range",
    "timeout",
    "secret",
    "secret_file",
    "insecure",
    "max_bytes",
    "max_message_size",
    "shared_memory",
    "shared_memory_capacity",
    "remote",
    "client_only",
];

/// The bytes of one stored object, read-only, shown to Python through the buffer protocol
/// without a copy: shared memory of the owning peer on one host, the received frame
/// otherwise. The memory stays valid while this object or any view of it lives.
#[pyclass(module = "proxystore_rs._native", frozen)]
struct Buffer {
    bytes: Bytes,
}

impl Buffer {
    fn new(bytes: Bytes) -> Self {
        Buffer { bytes }
    }
}

#[pymethods]
impl Buffer {
    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.bytes)
    }

    fn __repr__(&self) -> String {
        format!("Buffer({} bytes)", self.bytes.len())
    }

    /// # Safety
    /// `view` is the `Py_buffer` Python passes; it points into `self.bytes`, which the view's
    /// reference to this object keeps alive and which is never written.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if (flags & ffi::PyBUF_WRITABLE) == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err(
                "a stored object is read-only (copy it, e.g. bytearray(buffer), to change it)",
            ));
        }
        let (ptr, len) = {
            let this = slf.get();
            (this.bytes.as_ptr() as *mut c_void, this.bytes.len())
        };
        unsafe { fill_view(view, flags, ptr, len, true, slf.into_any()) }
    }

    /// # Safety
    /// Called by Python with a view `__getbuffer__` filled.
    unsafe fn __releasebuffer__(&self, view: *mut ffi::Py_buffer) {
        unsafe { release_view(view) }
    }
}

/// A writable buffer from `NativeConnector.alloc`, filled through the buffer protocol
/// (`memoryview(buf)`, `numpy.frombuffer(buf, ...)`), then stored by `put_buffer`.
#[pyclass(module = "proxystore_rs._native", frozen)]
struct WriteBuf {
    state: Mutex<Option<WriteBuffer>>,
    /// Views handed out and not yet released.
    exports: AtomicUsize,
}

impl WriteBuf {
    fn take(&self) -> PyResult<WriteBuffer> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| PyBufferError::new_err("write buffer poisoned"))?;
        if self.exports.load(Ordering::SeqCst) > 0 {
            return Err(PyBufferError::new_err(
                "a view of this write buffer (a memoryview or an array over it) is still alive: \
                 release it (del / view.release()) before storing the buffer, so the stored \
                 object cannot change afterwards",
            ));
        }
        state
            .take()
            .ok_or_else(|| PyBufferError::new_err("this write buffer was already stored"))
    }
}

#[pymethods]
impl WriteBuf {
    fn __len__(&self) -> PyResult<usize> {
        let state = self
            .state
            .lock()
            .map_err(|_| PyBufferError::new_err("write buffer poisoned"))?;
        Ok(state.as_ref().map_or(0, WriteBuffer::len))
    }

    /// Whether the buffer lies in a ZeroMQ peer's shared memory (readers on this host map it).
    #[getter]
    fn is_shared_memory(&self) -> PyResult<bool> {
        let state = self
            .state
            .lock()
            .map_err(|_| PyBufferError::new_err("write buffer poisoned"))?;
        Ok(state.as_ref().is_some_and(WriteBuffer::is_shared_memory))
    }

    /// # Safety
    /// `view` is the `Py_buffer` Python passes; it points into the `WriteBuffer`, which
    /// `take` refuses to hand out while any view is exported, so the memory outlives it.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let (ptr, len) = {
            let this = slf.get();
            let mut state = this
                .state
                .lock()
                .map_err(|_| PyBufferError::new_err("write buffer poisoned"))?;
            let Some(buffer) = state.as_mut() else {
                return Err(PyBufferError::new_err(
                    "this write buffer was already stored: read the object through its key",
                ));
            };
            this.exports.fetch_add(1, Ordering::SeqCst);
            (buffer.as_mut().as_mut_ptr() as *mut c_void, buffer.len())
        };
        unsafe { fill_view(view, flags, ptr, len, false, slf.into_any()) }
    }

    /// # Safety
    /// Called by Python with a view `__getbuffer__` filled.
    unsafe fn __releasebuffer__(&self, view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::SeqCst);
        unsafe { release_view(view) }
    }
}

/// Fills a one-dimensional byte view of `len` bytes at `buf`, owned by `owner`.
///
/// # Safety
/// `view` is null or a valid `Py_buffer`; `buf..buf+len` stays valid (and, when `readonly`,
/// unwritten) while `owner` lives.
unsafe fn fill_view(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    buf: *mut c_void,
    len: usize,
    readonly: bool,
    owner: Bound<'_, PyAny>,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("null view"));
    }
    let len = isize::try_from(len).map_err(|_| PyBufferError::new_err("buffer too large"))?;
    unsafe {
        (*view).obj = owner.into_ptr();
        (*view).buf = buf;
        (*view).len = len;
        (*view).readonly = c_int::from(readonly);
        (*view).itemsize = 1;
        (*view).format = if (flags & ffi::PyBUF_FORMAT) == ffi::PyBUF_FORMAT {
            CString::from(c"B").into_raw()
        } else {
            ptr::null_mut()
        };
        (*view).ndim = 1;
        (*view).shape = if (flags & ffi::PyBUF_ND) == ffi::PyBUF_ND {
            &mut (*view).len
        } else {
            ptr::null_mut()
        };
        (*view).strides = if (flags & ffi::PyBUF_STRIDES) == ffi::PyBUF_STRIDES {
            &mut (*view).itemsize
        } else {
            ptr::null_mut()
        };
        (*view).suboffsets = ptr::null_mut();
        (*view).internal = ptr::null_mut();
    }
    Ok(())
}

/// Frees what `fill_view` allocated for a view (its format string).
///
/// # Safety
/// `view` was filled by `fill_view`.
unsafe fn release_view(view: *mut ffi::Py_buffer) {
    unsafe {
        if !(*view).format.is_null() {
            drop(CString::from_raw((*view).format));
        }
    }
}

/// The module `proxystore_rs._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeConnector>()?;
    m.add_class::<Buffer>()?;
    m.add_class::<WriteBuf>()?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    Ok(())
}
