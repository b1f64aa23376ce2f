//! The C interface of `cpp/c10d_shim.h`, and safe wrappers that turn its error strings into
//! [`DistError`]s. The only module of metl that uses `unsafe`.
#![allow(unsafe_code)]

use crate::error::{DistError, Result};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use tch::Tensor;

#[repr(C)]
pub(crate) struct RawStore {
    _private: [u8; 0],
}

#[repr(C)]
pub(crate) struct RawGroup {
    _private: [u8; 0],
}

pub(crate) const SUM: c_int = 0;
pub(crate) const MAX: c_int = 1;
pub(crate) const MIN: c_int = 2;
pub(crate) const PRODUCT: c_int = 3;

extern "C" {
    fn metl_c10d_tcp_store(
        host: *const c_char,
        port: u16,
        world_size: i64,
        is_server: c_int,
        timeout_ms: i64,
        out: *mut *mut RawStore,
    ) -> *mut c_char;
    fn metl_c10d_gloo_group(
        store: *mut RawStore,
        rank: i64,
        size: i64,
        timeout_ms: i64,
        hostname: *const c_char,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    fn metl_c10d_nccl_group(
        store: *mut RawStore,
        rank: i64,
        size: i64,
        timeout_ms: i64,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    fn metl_c10d_has_nccl() -> c_int;
    fn metl_c10d_all_reduce(group: *mut RawGroup, tensor: *mut c_void, op: c_int) -> *mut c_char;
    fn metl_c10d_broadcast(group: *mut RawGroup, tensor: *mut c_void, root: i64) -> *mut c_char;
    fn metl_c10d_barrier(group: *mut RawGroup) -> *mut c_char;
    fn metl_c10d_free_group(group: *mut RawGroup);
    fn metl_c10d_free_store(store: *mut RawStore);
    fn metl_c10d_free_error(error: *mut c_char);
}

/// Turns the shim's error string (null for success) into a result, freeing it.
fn check(error: *mut c_char, what: impl FnOnce() -> String) -> Result<()> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string from malloc, owned by us.
    let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().trim().to_owned();
    // SAFETY: freed once, with the shim's own deallocator.
    unsafe { metl_c10d_free_error(error) };
    Err(DistError::C10d { operation: what(), message })
}

fn c_string(field: &'static str, value: &str) -> Result<CString> {
    CString::new(value).map_err(|_| DistError::Config {
        field,
        value: value.to_owned(),
        reason: "contains a NUL byte".into(),
    })
}

/// An owned `c10d::TCPStore`.
pub(crate) struct Store(*mut RawStore);

// SAFETY: c10d's TCPStore is used from several threads by c10d itself (it is thread-safe);
// the handle is only freed in Drop.
unsafe impl Send for Store {}
// SAFETY: as above.
unsafe impl Sync for Store {}

impl Store {
    pub(crate) fn tcp(
        host: &str,
        port: u16,
        world_size: usize,
        server: bool,
        timeout_ms: i64,
    ) -> Result<Self> {
        let c_host = c_string("MASTER_ADDR", host)?;
        let mut out = std::ptr::null_mut();
        // SAFETY: valid C string and out-pointer; the shim writes `out` only on success.
        let error = unsafe {
            metl_c10d_tcp_store(
                c_host.as_ptr(),
                port,
                world_size as i64,
                c_int::from(server),
                timeout_ms,
                &mut out,
            )
        };
        check(error, || format!("rendezvous with the TCP store at {host}:{port}"))?;
        Ok(Self(out))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: created by metl_c10d_tcp_store, freed once.
        unsafe { metl_c10d_free_store(self.0) }
    }
}

/// An owned c10d backend (`ProcessGroupGloo` or `ProcessGroupNCCL`).
pub(crate) struct Group(*mut RawGroup);

// SAFETY: c10d process groups are driven from any thread (their work runs on their own
// threads); collectives are serialised by the caller (ProcessGroup holds a Mutex).
unsafe impl Send for Group {}
// SAFETY: as above.
unsafe impl Sync for Group {}

impl Group {
    pub(crate) fn gloo(
        store: &Store,
        rank: usize,
        size: usize,
        timeout_ms: i64,
        hostname: Option<&str>,
    ) -> Result<Self> {
        let c_host = hostname.map(|h| c_string("hostname", h)).transpose()?;
        let host_ptr = c_host.as_ref().map_or(std::ptr::null(), |h| h.as_ptr());
        let mut out = std::ptr::null_mut();
        // SAFETY: live store handle, valid (or null) C string, out-pointer written on success.
        let error = unsafe {
            metl_c10d_gloo_group(store.0, rank as i64, size as i64, timeout_ms, host_ptr, &mut out)
        };
        check(error, || format!("creating the Gloo process group (rank {rank} of {size})"))?;
        Ok(Self(out))
    }

    pub(crate) fn nccl(store: &Store, rank: usize, size: usize, timeout_ms: i64) -> Result<Self> {
        let mut out = std::ptr::null_mut();
        // SAFETY: live store handle, out-pointer written on success.
        let error = unsafe { metl_c10d_nccl_group(store.0, rank as i64, size as i64, timeout_ms, &mut out) };
        check(error, || format!("creating the NCCL process group (rank {rank} of {size})"))?;
        Ok(Self(out))
    }

    pub(crate) fn all_reduce(&self, tensor: &Tensor, op: c_int) -> Result<()> {
        // SAFETY: `tensor.as_ptr()` is tch's live `at::Tensor*`; c10d reduces into its storage.
        let error = unsafe { metl_c10d_all_reduce(self.0, tensor.as_ptr() as *mut c_void, op) };
        check(error, || format!("all-reduce of {:?} {:?}", tensor.kind(), tensor.size()))
    }

    pub(crate) fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<()> {
        // SAFETY: as in all_reduce.
        let error = unsafe { metl_c10d_broadcast(self.0, tensor.as_ptr() as *mut c_void, root as i64) };
        check(error, || format!("broadcast from rank {root} of {:?} {:?}", tensor.kind(), tensor.size()))
    }

    pub(crate) fn barrier(&self) -> Result<()> {
        // SAFETY: live group handle.
        let error = unsafe { metl_c10d_barrier(self.0) };
        check(error, || "barrier".into())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: created by a metl_c10d_*_group function, freed once.
        unsafe { metl_c10d_free_group(self.0) }
    }
}

/// Whether this build has NCCL compiled in.
pub(crate) fn has_nccl() -> bool {
    // SAFETY: no arguments, no state.
    unsafe { metl_c10d_has_nccl() != 0 }
}
