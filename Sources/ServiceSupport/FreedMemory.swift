#if canImport(Glibc)
import Glibc
#endif

/// Gives memory a process freed back to the system.
///
/// glibc keeps what a thread freed in that thread's arena for reuse, so after a burst of large requests a
/// service stays as large as the burst made it (issue 14: tens of MiB for good after a few 2 MiB JSON bodies
/// on eight worker threads). `malloc_trim(0)` returns the free pages of every arena. It walks the heaps (about
/// a millisecond): call it after rare, large work, not per request.
public enum FreedMemory {
    /// `malloc_trim` is declared in `<malloc.h>`, which Swift's Glibc module does not export; it is looked up
    /// once instead of wrapping a C module for one function. Nil where the C library has none.
    private typealias Trim = @convention(c) (Int) -> Int32
    private static let trim: Trim? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: Trim.self)
        #else
        return nil
        #endif
    }()

    private typealias Option = @convention(c) (Int32, Int32) -> Int32
    private static let mallopt: Option? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return nil }
        return unsafeBitCast(symbol, to: Option.self)
        #else
        return nil
        #endif
    }()

    /// For a process that may be sent large requests: call once at start, before the threads.
    ///
    /// - Allocations of `mmapThreshold` bytes or more get pages of their own, returned the moment they are
    ///   freed. glibc's default threshold moves up (to 32 MiB) after the first large block is freed, after which
    ///   large blocks come from the thread arenas, whose top (up to twice that threshold) neither `free` nor
    ///   `malloc_trim` gives back: measured, 2.3 MiB per worker thread kept for good after a burst of 2 MiB
    ///   requests (decision 0015). Setting the threshold fixes it, and the trim threshold with it (128 KiB).
    /// - At most `arenas` malloc arenas (glibc's default is 8 per core, made as threads first contend): each
    ///   new arena costs about 0.5 MiB for good, and a burst is what makes worker threads contend. Small
    ///   allocations are served from each thread's cache (tcache) without the arena lock. `MALLOC_ARENA_MAX` in
    ///   the environment, when set, wins (for comparing; BENCHMARKS.md).
    public static func returnLargeBlocksAtOnce(mmapThreshold: Int32 = 256 << 10, arenas: Int32 = 2) {
        guard let mallopt else { return }
        let mmapThresholdOption: Int32 = -3  // M_MMAP_THRESHOLD, <malloc.h>
        let arenaMaxOption: Int32 = -8  // M_ARENA_MAX
        _ = mallopt(mmapThresholdOption, mmapThreshold)
        if getenv("MALLOC_ARENA_MAX") == nil {
            _ = mallopt(arenaMaxOption, arenas)
        }
    }

    /// Returns free heap pages to the system; true when some were.
    @discardableResult
    public static func release() -> Bool {
        guard let trim else { return false }
        return trim(0) != 0
    }
}
