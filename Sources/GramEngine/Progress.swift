import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Progress lines on stderr from rank 0: tiles done, elapsed time and an estimate of the
/// time left. Rank 0 extrapolates from its own share (ranks get equal areas).
final class Progress {
    let enabled: Bool
    let totalTiles: Int
    let myTiles: Int
    let ranks: Int
    let start = Clock.now
    private var lastPrint: UInt64 = 0
    private let interactive: Bool

    init(enabled: Bool, totalTiles: Int, myTiles: Int, ranks: Int) {
        self.enabled = enabled
        self.totalTiles = totalTiles
        self.myTiles = myTiles
        self.ranks = ranks
        self.interactive = isatty(2) != 0
    }

    func update(done: Int) {
        guard enabled else { return }
        let now = Clock.now
        if done < myTiles && now - lastPrint < 1_000_000_000 { return }
        lastPrint = now
        let elapsed = Clock.seconds(since: start)
        let fraction = myTiles == 0 ? 1 : Double(done) / Double(myTiles)
        let left = fraction > 0 ? elapsed * (1 - fraction) / fraction : .nan
        let estimated = min(totalTiles, Int((fraction * Double(totalTiles)).rounded()))
        let line = String(format: "ntk: tiles ~%d/%d (rank 0: %d/%d)  elapsed %.1fs  left ~%@",
                          estimated, totalTiles, done, myTiles, elapsed, left.isFinite ? String(format: "%.1fs", left) : "?")
        let text = interactive ? "\r\(line)\u{1B}[K" + (done >= myTiles ? "\n" : "") : line + "\n"
        FileHandle.standardError.write(Data(text.utf8))
    }
}
