import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Progress lines on stderr from rank 0: tiles done, elapsed time and an estimate of the
/// time left. Rank 0 extrapolates from its own share (ranks get equal areas).
///
/// On a terminal the line is rewritten in place every second. Anywhere else (a batch
/// job's log file) a plain line is appended every `logInterval` seconds, and a last one when
/// the tiles are done, so a log shows progress without carriage returns; a run shorter
/// than the interval prints nothing. With `--progress` asked for explicitly (a program
/// reading the lines, a notebook), plain lines come every second.
final class Progress {
    let enabled: Bool
    let totalTiles: Int
    let myTiles: Int
    let ranks: Int
    let start = Clock.now
    private var lastPrint: UInt64
    private var printed = false
    private let interactive: Bool
    /// Seconds between lines in a log file.
    static let logInterval: UInt64 = 30

    private let everySecond: Bool

    /// `explicit`: progress was asked for (plain lines every second off a terminal).
    init(enabled: Bool, explicit: Bool = false, totalTiles: Int, myTiles: Int, ranks: Int) {
        self.enabled = enabled
        self.everySecond = explicit
        self.totalTiles = totalTiles
        self.myTiles = myTiles
        self.ranks = ranks
        self.interactive = isatty(2) != 0
        lastPrint = start
    }

    func update(done: Int) {
        guard enabled else { return }
        let now = Clock.now
        let interval: UInt64 = interactive || everySecond ? 1_000_000_000 : Self.logInterval * 1_000_000_000
        let finished = done >= myTiles
        if finished ? !(interactive || printed) : now - lastPrint < interval { return }
        lastPrint = now
        printed = true
        let elapsed = Clock.seconds(since: start)
        let fraction = myTiles == 0 ? 1 : Double(done) / Double(myTiles)
        let left = fraction > 0 ? elapsed * (1 - fraction) / fraction : .nan
        let estimated = min(totalTiles, Int((fraction * Double(totalTiles)).rounded()))
        let line = String(format: "ntk: tiles ~%d/%d (rank 0: %d/%d)  elapsed %.1fs  left ~%@",
                          estimated, totalTiles, done, myTiles, elapsed, left.isFinite ? String(format: "%.1fs", left) : "?")
        let text = interactive ? "\r\(line)\u{1B}[K" + (finished ? "\n" : "") : line + "\n"
        FileHandle.standardError.write(Data(text.utf8))
    }
}
