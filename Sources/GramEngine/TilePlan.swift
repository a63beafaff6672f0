/// The partition of a Gram matrix into square tiles, and their assignment to ranks.
///
/// Rows (samples of the first data set) and columns (samples of the second, or the
/// first again) are cut into blocks of `tileSize`; the last block may be shorter. A
/// symmetric kernel keeps only the tiles with row block ≤ column block. Tiles are listed
/// row-major and dealt to ranks (`Dealing`) so that a rank reuses the per-sample
/// quantities of a row block across consecutive tiles.
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
    /// How the tiles are dealt.
    public let dealing: Dealing
    /// The rank that computes each tile.
    public let owners: [Int]
    /// With `.contiguous`: rank r owns tiles[boundaries[r] ..< boundaries[r + 1]].
    public let boundaries: [Int]

    /// How tiles are dealt to ranks.
    public enum Dealing: Sendable, Equatable {
        /// Contiguous runs of the row-major list, of about equal work: what the gather to
        /// rank 0 expects (a chunk of tiles arrives in rank order).
        case contiguous
        /// Whole tile rows, each to the rank with the least work so far: every rank moves
        /// through the rows in step with the others, so the row blocks of the kernel are
        /// complete one after the other while the tiles are computed (what the stripe
        /// writer of kernel.npy needs). The work differs by at most one row's.
        case rows
    }

    public init(rows: Int, columns: Int, tileSize: Int, symmetric: Bool, ranks: Int, dealing: Dealing = .contiguous) {
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
        self.dealing = dealing
        switch dealing {
        case .contiguous:
            self.boundaries = boundaries
            var owners = [Int](repeating: 0, count: tiles.count)
            for r in 0..<ranks { for index in boundaries[r]..<boundaries[r + 1] { owners[index] = r } }
            self.owners = owners
        case .rows:
            self.boundaries = []
            var owners = [Int](repeating: 0, count: tiles.count)
            var load = [Int](repeating: 0, count: ranks)
            var start = 0
            while start < tiles.count {
                var end = start
                while end < tiles.count && tiles[end].row == tiles[start].row { end += 1 }
                let rank = load.indices.min { load[$0] < load[$1] || (load[$0] == load[$1] && $0 < $1) }!
                load[rank] += prefix[end] - prefix[start]
                for index in start..<end { owners[index] = rank }
                start = end
            }
            self.owners = owners
        }
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

    /// Indices into `tiles` owned by `rank`, increasing (possibly none when there are more
    /// ranks than tiles).
    public func tileIndices(ofRank rank: Int) -> [Int] {
        dealing == .contiguous ? Array(boundaries[rank]..<boundaries[rank + 1]) : owners.indices.filter { owners[$0] == rank }
    }

    /// The rank that owns tile `index`.
    public func owner(ofTile index: Int) -> Int { owners[index] }

    /// The rank that computes tile row `block` with `.rows` dealing.
    public func owner(ofRowBlock block: Int) -> Int {
        owners[tiles.firstIndex { $0.row == block }!]
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
