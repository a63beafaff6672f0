/// The partition of a Gram matrix into square tiles, and their assignment to ranks.
///
/// Rows (samples of the first data set) and columns (samples of the second, or the
/// first again) are cut into blocks of `tileSize`; the last block may be shorter. A
/// symmetric kernel keeps only the tiles with row block ≤ column block. Tiles are listed
/// row-major and dealt to ranks in contiguous runs of about equal work, so a rank
/// reuses the per-sample quantities of a row block across consecutive tiles.
public struct TilePlan: Sendable, Equatable {
    /// One tile, by its row block and column block.
    public struct Tile: Hashable, Sendable {
        public let row: Int
        public let column: Int
    }

    public let rows: Int
    public let columns: Int
    public let tileSize: Int
    public let symmetric: Bool
    public let ranks: Int
    /// All tiles, row-major.
    public let tiles: [Tile]
    /// Rank r owns tiles[boundaries[r] ..< boundaries[r + 1]].
    public let boundaries: [Int]

    public init(rows: Int, columns: Int, tileSize: Int, symmetric: Bool, ranks: Int) {
        precondition(rows > 0 && columns > 0 && tileSize > 0 && ranks > 0)
        precondition(!symmetric || rows == columns)
        self.rows = rows
        self.columns = columns
        self.tileSize = tileSize
        self.symmetric = symmetric
        self.ranks = ranks
        let rowBlocks = (rows + tileSize - 1) / tileSize
        let columnBlocks = (columns + tileSize - 1) / tileSize
        var tiles: [Tile] = []
        for i in 0..<rowBlocks {
            for j in (symmetric ? i : 0)..<columnBlocks { tiles.append(Tile(row: i, column: j)) }
        }
        self.tiles = tiles
        // Contiguous runs of about equal work: rank r starts at the first tile whose
        // preceding work reaches r / ranks of the total. A tile's work is its area; a
        // diagonal tile of a symmetric kernel computes only its upper triangle.
        var prefix = [0]
        for t in tiles {
            let height = Self.length(of: t.row, total: rows, tileSize: tileSize)
            let width = Self.length(of: t.column, total: columns, tileSize: tileSize)
            let area = symmetric && t.row == t.column ? height * (height + 1) / 2 : height * width
            prefix.append(prefix.last! + area)
        }
        let total = prefix.last!
        var boundaries = [0]
        var index = 0
        for r in 1..<ranks {
            let target = (total * r + ranks - 1) / ranks
            while index < tiles.count && prefix[index] < target { index += 1 }
            boundaries.append(index)
        }
        boundaries.append(tiles.count)
        self.boundaries = boundaries
    }

    public var rowBlocks: Int { (rows + tileSize - 1) / tileSize }
    public var columnBlocks: Int { (columns + tileSize - 1) / tileSize }

    /// The rows of row block `block`.
    public func rowRange(_ block: Int) -> Range<Int> {
        (block * tileSize)..<min(rows, (block + 1) * tileSize)
    }

    /// The columns of column block `block`.
    public func columnRange(_ block: Int) -> Range<Int> {
        (block * tileSize)..<min(columns, (block + 1) * tileSize)
    }

    /// Indices into `tiles` owned by `rank` (possibly empty when there are more ranks
    /// than tiles).
    public func tileIndices(ofRank rank: Int) -> Range<Int> {
        boundaries[rank]..<boundaries[rank + 1]
    }

    /// The rank that owns tile `index`.
    public func owner(ofTile index: Int) -> Int {
        var r = 0
        while boundaries[r + 1] <= index { r += 1 }
        return r
    }

    /// Runs of consecutive tiles within one row block whose values together stay under
    /// `limit` elements (per entry `entrySize` doubles): the units of the gather, so
    /// that no MPI count exceeds Int32.
    public func gatherChunks(entrySize: Int, limit: Int = 1 << 30) -> [Range<Int>] {
        var chunks: [Range<Int>] = []
        var start = 0
        var size = 0
        for (index, tile) in tiles.enumerated() {
            let area = rowRange(tile.row).count * columnRange(tile.column).count * entrySize
            if index > start && (tiles[start].row != tile.row || size + area > limit) {
                chunks.append(start..<index)
                start = index
                size = 0
            }
            size += area
        }
        if start < tiles.count { chunks.append(start..<tiles.count) }
        return chunks
    }

    static func length(of block: Int, total: Int, tileSize: Int) -> Int {
        min(total, (block + 1) * tileSize) - block * tileSize
    }
}
