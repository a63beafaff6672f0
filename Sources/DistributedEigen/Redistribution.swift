import MPI

extension BlockCyclicMatrix {
    /// Builds the block-cyclic matrix on `grid` from blocks held anywhere: block (I, J)
    /// (row-major values) goes to grid process (I mod P, J mod Q), the only process that
    /// stores it, since the tile size is the block size.
    ///
    /// One all-to-all exchange: block headers (I, J) and values travel together, in
    /// rounds when large, so that no MPI count exceeds Int32 and no rank buffers more
    /// than about 2^27 doubles (1 GiB) at once beyond its share. Throws
    /// `.invalidBlocks` on every rank if a block of the upper triangle was given by no
    /// rank or by two. Collective; the blocks must already be valid in shape.
    static func assemble(n: Int, blockSize nb: Int, blocks: [(row: Int, column: Int, values: [Double])],
                         grid: ProcessGrid, world: Communicator) throws -> BlockCyclicMatrix {
        var matrix = BlockCyclicMatrix(n: n, columns: n, blockSize: nb, gridRows: grid.rows, gridColumns: grid.columns,
                                       myRow: grid.myRow, myColumn: grid.myColumn)
        let ranks = world.size
        let limit = max(nb * nb, (1 << 27) / ranks)
        guard limit <= Int(Int32.max) / ranks else {
            throw DistributedEigenError.tooLarge("\(nb) x \(nb) blocks on \(ranks) ranks exceed MPI's 32-bit counts")
        }

        // Outgoing blocks grouped by destination, cut into rounds of at most `limit` values.
        let destinations = blocks.map { grid.owner(blockRow: $0.row, blockColumn: $0.column) }
        let order = blocks.indices.sorted { (destinations[$0], $0) < (destinations[$1], $1) }
        var rounds: [Range<Int>] = []
        var start = 0, size = 0
        for (position, index) in order.enumerated() {
            let count = blocks[index].values.count
            if position > start && size + count > limit {
                rounds.append(start..<position)
                start = position
                size = 0
            }
            size += count
        }
        if start < order.count { rounds.append(start..<order.count) }
        let roundCount = Int(try world.allreduce(Int64(rounds.count), .max))

        let blockRowsHere = (matrix.localRows + nb - 1) / nb
        let blockColumnsHere = (matrix.localColumns + nb - 1) / nb
        var seen = [Bool](repeating: false, count: blockRowsHere * blockColumnsHere)
        var problem: String? = nil
        for round in 0..<roundCount {
            let range = round < rounds.count ? rounds[round] : order.count..<order.count
            var blockCounts = [Int64](repeating: 0, count: ranks)
            var valueCounts = [Int64](repeating: 0, count: ranks)
            var headers: [Int64] = []
            var payload: [Double] = []
            payload.reserveCapacity(range.reduce(0) { $0 + blocks[order[$1]].values.count })
            for position in range {
                let block = blocks[order[position]]
                let destination = destinations[order[position]]
                blockCounts[destination] += 1
                valueCounts[destination] += Int64(block.values.count)
                headers.append(Int64(block.row))
                headers.append(Int64(block.column))
                payload.append(contentsOf: block.values)
            }
            let incomingBlocks = try world.alltoall(blockCounts).map { Int($0) }
            let incomingValues = try world.alltoall(valueCounts).map { Int($0) }
            var inHeaders = [Int64](repeating: 0, count: 2 * incomingBlocks.reduce(0, +))
            var inPayload = [Double](repeating: 0, count: incomingValues.reduce(0, +))
            try headers.withUnsafeBufferPointer { send in
                try inHeaders.withUnsafeMutableBufferPointer { receive in
                    try world.alltoallv(send: send, sendCounts: blockCounts.map { 2 * Int($0) },
                                        receive: receive, receiveCounts: incomingBlocks.map { 2 * $0 })
                }
            }
            try payload.withUnsafeBufferPointer { send in
                try inPayload.withUnsafeMutableBufferPointer { receive in
                    try world.alltoallv(send: send, sendCounts: valueCounts.map { Int($0) },
                                        receive: receive, receiveCounts: incomingValues)
                }
            }

            // Place each block: local rows (I / P) * nb ..., local columns (J / Q) * nb ...
            let ld = matrix.localRows
            var offset = 0
            matrix.local.withUnsafeMutableBufferPointer { local in
                for h in stride(from: 0, to: inHeaders.count, by: 2) {
                    let blockRow = Int(inHeaders[h]), blockColumn = Int(inHeaders[h + 1])
                    let rows = min(n, (blockRow + 1) * nb) - blockRow * nb
                    let columns = min(n, (blockColumn + 1) * nb) - blockColumn * nb
                    let seenIndex = (blockColumn / grid.columns) * blockRowsHere + blockRow / grid.rows
                    if seen[seenIndex] {
                        if problem == nil { problem = "block (\(blockRow), \(blockColumn)) was given more than once" }
                    } else {
                        seen[seenIndex] = true
                        let row0 = localStart(ofBlock: blockRow, processes: grid.rows, blockSize: nb)
                        let column0 = localStart(ofBlock: blockColumn, processes: grid.columns, blockSize: nb)
                        for c in 0..<columns {
                            let target = (column0 + c) * ld + row0
                            for r in 0..<rows { local[target + r] = inPayload[offset + r * columns + c] }
                        }
                    }
                    offset += rows * columns
                }
            }
        }

        // Every block of the upper triangle that lives here must have arrived.
        if problem == nil {
            search: for bj in 0..<blockColumnsHere {
                for bi in 0..<blockRowsHere where !seen[bj * blockRowsHere + bi] {
                    let blockRow = bi * grid.rows + grid.myRow, blockColumn = bj * grid.columns + grid.myColumn
                    if blockRow <= blockColumn {
                        problem = "block (\(blockRow), \(blockColumn)) was given by no rank"
                        break search
                    }
                }
            }
        }
        try agree(problem, world: world) { DistributedEigenError.invalidBlocks($0) }
        return matrix
    }
}

/// Agrees across ranks on a failure that may have happened on some ranks only: if any
/// rank has a message, every rank throws `error(message)` with the message of the lowest
/// failing rank. Collective.
func agree(_ message: String?, world: Communicator, error: (String) -> DistributedEigenError) throws {
    let outcome = try world.agree(status: message == nil ? 0 : 1)
    guard let first = outcome.firstFailingRank else { return }
    let bytes = try world.broadcast(bytes: Array((message ?? "").utf8), root: first)
    throw error(String(decoding: bytes, as: UTF8.self))
}
