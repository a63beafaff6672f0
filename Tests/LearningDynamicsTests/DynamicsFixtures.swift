import Foundation
import LearningDynamics
import NumPyIO

/// The committed learning-dynamics fixtures in Tests/Fixtures/dynamics, made by
/// scripts/reference/make_dynamics_fixtures.py with neural-tangents 0.6.5 in float64.
enum DynamicsFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("dynamics")

    /// A case's case.json.
    struct Case: Decodable, Sendable, CustomStringConvertible {
        let name: String
        let n: Int
        let m: Int
        let k: Int
        let learningRate: Double
        let diagReg: Double
        let diagRegAbsoluteScale: Bool
        let diagonalShift: Double
        let maxLearningRate: Double
        let normalization: Double
        let infReference: String
        let hasSolve: Bool
        let labels: Bool
        let classes: Int?
        var description: String { name }

        enum CodingKeys: String, CodingKey {
            case name, n, m, k, labels, classes
            case learningRate = "learning_rate", diagReg = "diag_reg"
            case diagRegAbsoluteScale = "diag_reg_absolute_scale", diagonalShift = "diagonal_shift"
            case maxLearningRate = "max_learning_rate", normalization, infReference = "inf_reference"
            case hasSolve = "has_solve"
        }

        var regularizer: DiagonalRegularizer {
            if diagReg == 0 { return .none }
            return diagRegAbsoluteScale ? .absolute(diagReg) : .relative(diagReg)
        }

        func url(_ file: String) -> URL {
            DynamicsFixtures.root.appendingPathComponent(name).appendingPathComponent(file)
        }

        func array(_ file: String) throws -> NPYArray {
            try NPYFormat.read(contentsOf: url(file))
        }

        /// A 2-D float64 array as a matrix.
        func matrix(_ file: String) throws -> RowMajorMatrix {
            let a = try array(file)
            precondition(a.shape.count == 2, "\(file) is not 2-D")
            return RowMajorMatrix(rows: a.shape[0], columns: a.shape[1], elements: a.doubles())
        }

        /// A 3-D float64 array (T, rows, columns) as T matrices.
        func matrices(_ file: String) throws -> [RowMajorMatrix] {
            let a = try array(file)
            precondition(a.shape.count == 3, "\(file) is not 3-D")
            let (t, r, c) = (a.shape[0], a.shape[1], a.shape[2])
            let values = a.doubles()
            return (0..<t).map { RowMajorMatrix(rows: r, columns: c, elements: Array(values[($0 * r * c)..<(($0 + 1) * r * c)])) }
        }

        func vector(_ file: String) throws -> [Double] { try array(file).doubles() }

        func integers(_ file: String) throws -> [Int] { try array(file).int64s().map { Int($0) } }

        func diagnostics() throws -> ReferenceDiagnostics {
            try JSONDecoder().decode(ReferenceDiagnostics.self, from: Data(contentsOf: url("diagnostics.json")))
        }

        func dynamics() throws -> GradientDescentMSE {
            try GradientDescentMSE(trainKernel: matrix("kernel_train.npy"), targets: matrix("y_train.npy"),
                                   learningRate: learningRate, regularizer: regularizer)
        }
    }

    /// diagnostics.json: the numpy computations straight from the matrices.
    struct ReferenceDiagnostics: Decodable {
        let n: Int
        let lambda_min: Double
        let lambda_max: Double
        let condition_number: Double?
        let trace: Double
        let negative_eigenvalues: Int
        let effective_rank: Double
        let participation_ratio: Double
        let stable_rank: Double
        let decay_exponent: Double
        let decay_fit_modes: Int
        let kernel_target_alignment: Double
        let centered_kernel_target_alignment: Double
        let cumulative_label_power: [Double]
    }

    static let cases: [Case] = {
        guard let data = try? Data(contentsOf: root.appendingPathComponent("cases.json")),
              let list = try? JSONDecoder().decode([Name].self, from: data) else { return [] }
        return list.compactMap { entry in
            guard let data = try? Data(contentsOf: root.appendingPathComponent(entry.name).appendingPathComponent("case.json")) else { return nil }
            return try? JSONDecoder().decode(Case.self, from: data)
        }
    }()

    private struct Name: Decodable { let name: String }
}

/// max |a − b| / max |b|: the relative error measure of the fixtures' tolerances.
func relativeError(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    var diff = 0.0, scale = 0.0
    for (x, y) in zip(a, b) {
        diff = max(diff, abs(x - y))
        scale = max(scale, abs(y))
    }
    return scale == 0 ? diff : diff / scale
}

func relativeError(_ a: RowMajorMatrix, _ b: RowMajorMatrix) -> Double {
    precondition(a.rows == b.rows && a.columns == b.columns, "shapes differ")
    return relativeError(a.elements, b.elements)
}

/// |a − b| / |b| for scalars (|a − b| when b = 0).
func relativeError(_ a: Double, _ b: Double) -> Double {
    b == 0 ? abs(a - b) : abs(a - b) / abs(b)
}
