import CScaLAPACK
import MPI

/// A BLACS process grid of `rows` x `columns` processes over every rank of the MPI world
/// (the BLACS default system context is MPI_COMM_WORLD), numbered row-major.
///
/// The shape uses all ranks: rows x columns = ranks, rows <= columns, rows the largest
/// divisor of the rank count not above its square root (4 -> 2 x 2, 6 -> 2 x 3, a prime
/// p -> 1 x p). No rank is left outside the grid, so every rank holds a share of the
/// matrix and takes part in every ScaLAPACK call.
struct ProcessGrid {
    /// The BLACS context of the grid.
    let context: Int32
    let rows: Int
    let columns: Int
    let myRow: Int
    let myColumn: Int
    /// The world rank of grid process (r, c), at index r * columns + c.
    let worldRanks: [Int]

    /// The grid shape for `ranks` processes.
    static func shape(ranks: Int) -> (rows: Int, columns: Int) {
        precondition(ranks >= 1)
        var rows = 1
        var candidate = 1
        while candidate * candidate <= ranks {
            if ranks % candidate == 0 { rows = candidate }
            candidate += 1
        }
        return (rows, ranks / rows)
    }

    /// Creates the grid. Collective over `world`; throws `.grid` (on every rank) if BLACS
    /// does not see the same processes as MPI.
    init(world: Communicator) throws {
        var blacsRank: Int32 = 0
        var blacsCount: Int32 = 0
        ntk_blacs_pinfo(&blacsRank, &blacsCount)
        let (rows, columns) = Self.shape(ranks: world.size)
        let system = ntk_blacs_system_context()
        let context = ntk_blacs_gridinit(system, Int32(rows), Int32(columns))
        var r: Int32 = 0, c: Int32 = 0, myRow: Int32 = -1, myColumn: Int32 = -1
        ntk_blacs_gridinfo(context, &r, &c, &myRow, &myColumn)
        self.context = context
        self.rows = rows
        self.columns = columns
        self.myRow = Int(myRow)
        self.myColumn = Int(myColumn)

        // Where each grid process lives in the world, learned rather than assumed: every
        // rank contributes its grid position (+1, so that 0 means "none").
        var positions = [Int64](repeating: 0, count: world.size)
        let inside = myRow >= 0 && myColumn >= 0 && Int(r) == rows && Int(c) == columns
        if inside { positions[world.rank] = Int64(Int(myRow) * columns + Int(myColumn) + 1) }
        try world.allreduce(&positions, .sum)
        var worldRanks = [Int](repeating: -1, count: rows * columns)
        var consistent = Int(blacsCount) == world.size
        for (rank, position) in positions.enumerated() {
            let index = Int(position) - 1
            if index < 0 || index >= worldRanks.count || worldRanks[index] != -1 { consistent = false; continue }
            worldRanks[index] = rank
        }
        self.worldRanks = worldRanks
        if !consistent {
            if inside { ntk_blacs_gridexit(context) }
            throw DistributedEigenError.grid("BLACS sees \(blacsCount) process(es) for \(world.size) MPI rank(s) on a \(rows) x \(columns) grid")
        }
    }

    /// The world rank that holds global block (blockRow, blockColumn).
    func owner(blockRow: Int, blockColumn: Int) -> Int {
        worldRanks[(blockRow % rows) * columns + blockColumn % columns]
    }

    /// Releases the grid's context. Collective.
    func release() {
        if myRow >= 0 { ntk_blacs_gridexit(context) }
    }
}
