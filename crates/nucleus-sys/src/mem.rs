//! Returning freed heap to the kernel.

/// `malloc_trim(0)`: gives the pages of freed heap memory back to the
/// kernel. A long-lived monitor calls it once its setup allocations are
/// gone, so it does not keep them resident for the container's lifetime.
///
/// # References
/// [malloc_trim(3)](https://man7.org/linux/man-pages/man3/malloc_trim.3.html)
pub fn release_free_heap() {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks;
    // it has no preconditions on the caller.
    unsafe {
        libc::malloc_trim(0);
    }
}
