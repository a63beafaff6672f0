import CScaLAPACK

/// A matrix distributed over a process grid as ScaLAPACK stores it: square blocks of
/// `blockSize`, block (I, J) on grid process (I mod gridRows, J mod gridColumns), the
/// first block on process (0, 0).
///
/// Each rank holds its blocks in `local`, column-major with leading dimension
/// `localRows`: local element (i, j) is global element `globalIndex(localRow: i,
/// localColumn: j)`. No rank holds the whole matrix.
public struct BlockCyclicMatrix: Sendable {
    /// The global number of rows.
    public let n: Int
    /// The global number of columns: n for a square matrix, or the number of
    /// eigenvectors kept (`ScaLAPACKEigen.solve` with `top`).
    public let columns: Int
    /// The side of the square blocks.
    public let blockSize: Int
    /// The process grid's shape and this rank's coordinates in it.
    public let gridRows: Int, gridColumns: Int, myRow: Int, myColumn: Int
    /// This rank's blocks, column-major, leading dimension `localRows`.
    public var local: [Double]
    /// The number of global rows and columns stored on this rank.
    public let localRows: Int, localColumns: Int

    /// An empty distributed matrix of `n` rows and `columns` columns on the given grid.
    init(n: Int, columns: Int, blockSize: Int, gridRows: Int, gridColumns: Int, myRow: Int, myColumn: Int) {
        self.n = n
        self.columns = columns
        self.blockSize = blockSize
        self.gridRows = gridRows
        self.gridColumns = gridColumns
        self.myRow = myRow
        self.myColumn = myColumn
        self.localRows = Self.localCount(n, blockSize: blockSize, index: myRow, processes: gridRows)
        self.localColumns = Self.localCount(columns, blockSize: blockSize, index: myColumn, processes: gridColumns)
        self.local = [Double](repeating: 0, count: localRows * localColumns)
    }

    /// The global (row, column) of local element (i, j).
    public func globalIndex(localRow i: Int, localColumn j: Int) -> (row: Int, column: Int) {
        ((i / blockSize * gridRows + myRow) * blockSize + i % blockSize,
         (j / blockSize * gridColumns + myColumn) * blockSize + j % blockSize)
    }

    /// The local offset, in rows or columns, of the start of global block `block` (which
    /// must belong to this rank's grid row or column).
    static func localStart(ofBlock block: Int, processes: Int, blockSize: Int) -> Int {
        block / processes * blockSize
    }

    /// How many of `count` rows (or columns), dealt in blocks of `blockSize` from
    /// process 0 over `processes`, land on process `index` (ScaLAPACK's NUMROC).
    static func localCount(_ count: Int, blockSize: Int, index: Int, processes: Int) -> Int {
        let blocks = count / blockSize
        var local = blocks / processes * blockSize
        let extra = blocks % processes
        if index < extra { local += blockSize } else if index == extra { local += count % blockSize }
        return local
    }

    /// The ScaLAPACK descriptor of this matrix on grid `context`.
    func descriptor(context: Int32) throws -> [Int32] {
        var descriptor = [Int32](repeating: 0, count: 9)
        let info = ntk_descinit(&descriptor, Int32(n), Int32(columns), Int32(blockSize), Int32(blockSize),
                                context, Int32(max(1, localRows)))
        if info != 0 { throw DistributedEigenError.scalapack(routine: "descinit", info: info) }
        return descriptor
    }
}
