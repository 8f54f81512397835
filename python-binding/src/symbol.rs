//! Functions of the running interpreter that the stable ABI this wheel is
//! built for (abi3, Python 3.9) does not declare, looked up when needed.
//!
//! One abi3 wheel serves every Python from 3.9 on, so it may link only what
//! 3.9's limited API has: linking anything else would stop the module from
//! loading where that symbol is missing. Some faster entry points exist
//! only in later versions (`PyObject_Vectorcall` is exported from 3.11),
//! or exist everywhere but outside the limited API (`PyFrame_GetBack`).
//! Looking them up at run time keeps the wheel loadable everywhere and lets
//! each caller fall back to the limited API where a symbol is absent.

use std::ffi::{CStr, c_void};
use std::ptr::NonNull;

/// The address of `name` among the symbols of the process (the interpreter
/// and what it loaded), if it exports one.
///
/// The caller must give the address the C type the interpreter's headers
/// give that name, in every version that exports it.
pub(crate) fn find(name: &CStr) -> Option<NonNull<c_void>> {
    // SAFETY: `dlsym` with `RTLD_DEFAULT` and a NUL-terminated name has no
    // precondition; it only reads the loaded objects' symbol tables.
    NonNull::new(unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) })
}
