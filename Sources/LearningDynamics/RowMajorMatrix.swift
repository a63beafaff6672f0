/// A dense real matrix in row-major (C) order, the layout of a C-order `.npy` file:
/// element (i, j) is `elements[i * columns + j]`.
public struct RowMajorMatrix: Sendable, Equatable {
    /// The number of rows.
    public let rows: Int
    /// The number of columns.
    public let columns: Int
    /// The elements, row after row; `rows * columns` of them.
    public private(set) var elements: [Double]

    /// Creates a matrix from its row-major elements.
    /// - Precondition: `rows, columns >= 0` and `elements.count == rows * columns`.
    public init(rows: Int, columns: Int, elements: [Double]) {
        precondition(rows >= 0 && columns >= 0 && elements.count == rows * columns,
                     "RowMajorMatrix: \(elements.count) elements do not make \(rows) x \(columns)")
        self.rows = rows
        self.columns = columns
        self.elements = elements
    }

    /// Creates a `rows` x `columns` matrix with every element equal to `value`.
    public init(rows: Int, columns: Int, repeating value: Double = 0) {
        self.init(rows: rows, columns: columns, elements: [Double](repeating: value, count: rows * columns))
    }

    /// Element (row, column).
    public subscript(row: Int, column: Int) -> Double {
        get { elements[row * columns + column] }
        set { elements[row * columns + column] = newValue }
    }

    /// The transpose (columns x rows).
    public var transposed: RowMajorMatrix {
        var t = RowMajorMatrix(rows: columns, columns: rows)
        for i in 0..<rows { for j in 0..<columns { t.elements[j * rows + i] = elements[i * columns + j] } }
        return t
    }

    /// One-hot targets: row i is 1 in column `labels[i]` and 0 elsewhere (`labels.count` x
    /// `classes`), the 0/1 encoding of integer class labels.
    /// - Throws: ``DynamicsError/labelOutOfRange(index:label:classes:)`` for a label outside
    ///   `0..<classes`; ``DynamicsError/invalidParameter(_:)`` when `classes < 1`.
    public static func oneHot(labels: [Int], classes: Int) throws(DynamicsError) -> RowMajorMatrix {
        if classes < 1 { throw .invalidParameter("the number of classes must be at least 1, not \(classes)") }
        var m = RowMajorMatrix(rows: labels.count, columns: classes)
        for (i, label) in labels.enumerated() {
            guard (0..<classes).contains(label) else { throw .labelOutOfRange(index: i, label: label, classes: classes) }
            m[i, label] = 1
        }
        return m
    }

    /// The first (row, column) holding NaN or an infinity, if any.
    var firstNonFinite: (row: Int, column: Int)? {
        guard let index = elements.firstIndex(where: { !$0.isFinite }) else { return nil }
        return (index / Swift.max(columns, 1), index % Swift.max(columns, 1))
    }

    /// Throws unless the matrix is `rows` x `columns` with finite elements; `name` says
    /// which input it is in the message.
    func validate(_ name: String, rows expectedRows: Int?, columns expectedColumns: Int?) throws(DynamicsError) {
        if (expectedRows.map { $0 != rows } ?? false) || (expectedColumns.map { $0 != columns } ?? false) {
            let expected = "\(expectedRows.map(String.init) ?? "any") x \(expectedColumns.map(String.init) ?? "any")"
            throw .shape("\(name) is \(rows) x \(columns), expected \(expected)")
        }
        if let (i, j) = firstNonFinite { throw .nonFinite(name: name, row: i, column: j) }
    }
}
