import LinearAlgebra

/// Failures of the learning-dynamics and spectral computations; all come from their inputs.
public enum DynamicsError: Error, Equatable, CustomStringConvertible, Sendable {
    /// An input has the wrong shape (the message names it and both shapes).
    case shape(String)
    /// An input holds NaN or an infinity at (row, column).
    case nonFinite(name: String, row: Int, column: Int)
    /// A scalar parameter is out of its domain (learning rate, time, regularizer, ...).
    case invalidParameter(String)
    /// The train kernel is not symmetric: max |Θ_ij − Θ_ji| relative to max |Θ_ij|.
    case notSymmetric(relativeDifference: Double)
    /// Eigenvalues were not given in ascending order (first offending index).
    case notAscending(index: Int)
    /// An integer label outside 0..<classes (its row and value).
    case labelOutOfRange(index: Int, label: Int, classes: Int)
    /// The eigendecomposition failed.
    case eigen(EigenError)

    public var description: String {
        switch self {
        case .shape(let message):
            return message
        case .nonFinite(let name, let row, let column):
            return "\(name) has a non-finite entry at (\(row), \(column))"
        case .invalidParameter(let message):
            return message
        case .notSymmetric(let difference):
            return "the train kernel is not symmetric (max |K_ij - K_ji| / max |K_ij| = \(difference))"
        case .notAscending(let index):
            return "eigenvalues must be in ascending order (eigenvalue \(index) is smaller than its predecessor)"
        case .labelOutOfRange(let index, let label, let classes):
            return "label \(label) of sample \(index) is outside 0..<\(classes)"
        case .eigen(let error):
            return error.description
        }
    }
}
