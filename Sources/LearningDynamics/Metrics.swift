/// Errors of predictions against targets.
public enum Metrics {
    /// The mean squared error over all entries, ‖F − Y‖²_F / (rows · columns). For the train
    /// set it is twice the loss: L = (1/(2c)) ‖F − Y‖²_F = MSE / 2 with c = N k.
    /// - Throws: ``DynamicsError/shape(_:)`` when the shapes differ or are empty.
    public static func meanSquaredError(_ predictions: RowMajorMatrix, _ targets: RowMajorMatrix) throws(DynamicsError) -> Double {
        if predictions.rows != targets.rows || predictions.columns != targets.columns {
            throw .shape("predictions are \(predictions.rows) x \(predictions.columns) but targets are \(targets.rows) x \(targets.columns)")
        }
        if predictions.elements.isEmpty { throw .shape("there are no predictions") }
        var sum = 0.0
        for (f, y) in zip(predictions.elements, targets.elements) { sum += (f - y) * (f - y) }
        return sum / Double(predictions.elements.count)
    }

    /// The fraction of rows whose argmax equals the label (the first maximum wins a tie, as
    /// in `numpy.argmax`); for one output per class (k >= 2), e.g. after training on
    /// ``RowMajorMatrix/oneHot(labels:classes:)`` targets.
    /// - Throws: ``DynamicsError/shape(_:)`` for a row/label count mismatch, no rows or
    ///   k < 2; ``DynamicsError/labelOutOfRange(index:label:classes:)`` for a bad label.
    public static func accuracy(_ predictions: RowMajorMatrix, labels: [Int]) throws(DynamicsError) -> Double {
        let k = predictions.columns
        if predictions.rows != labels.count {
            throw .shape("there are \(predictions.rows) predictions but \(labels.count) labels")
        }
        if labels.isEmpty { throw .shape("there are no predictions") }
        if k < 2 { throw .shape("accuracy needs one output per class (k >= 2), not k = \(k)") }
        var correct = 0
        for (i, label) in labels.enumerated() {
            guard (0..<k).contains(label) else { throw .labelOutOfRange(index: i, label: label, classes: k) }
            var best = 0
            for a in 1..<k where predictions[i, a] > predictions[i, best] { best = a }
            if best == label { correct += 1 }
        }
        return Double(correct) / Double(labels.count)
    }
}

/// The errors of one ``Prediction``, for summary.json (snake_case keys). Encodes its time
/// as `"t": <number>` or `"t": "inf"` for gradient flow (Python's `float()` reads both) and
/// `"steps": <integer>` for discrete steps.
public struct PredictionMetrics: Codable, Sendable, Equatable {
    /// When.
    public var time: TrainingTime
    /// (1/(2c)) ‖f_t(X) − Y‖²_F.
    public var trainLoss: Double
    /// ‖f_t(X) − Y‖²_F / (N k).
    public var trainMSE: Double
    /// ‖f_t(X*) − Y*‖²_F / (M k), with test targets.
    public var testMSE: Double?
    /// With train labels.
    public var trainAccuracy: Double?
    /// With test labels.
    public var testAccuracy: Double?

    /// The metrics of `prediction` against the train targets Y and, where given, the test
    /// targets and the train/test integer labels.
    /// - Throws: ``DynamicsError`` for inconsistent shapes or labels, or test targets/labels
    ///   for a prediction without a test set.
    public init(prediction: Prediction, trainTargets: RowMajorMatrix, testTargets: RowMajorMatrix? = nil,
                trainLabels: [Int]? = nil, testLabels: [Int]? = nil) throws(DynamicsError) {
        time = prediction.time
        trainLoss = prediction.trainLoss
        trainMSE = try Metrics.meanSquaredError(prediction.train, trainTargets)
        if let labels = trainLabels { trainAccuracy = try Metrics.accuracy(prediction.train, labels: labels) }
        if testTargets != nil || testLabels != nil {
            guard let test = prediction.test else { throw .shape("test targets or labels given for a prediction without a test set") }
            if let targets = testTargets { testMSE = try Metrics.meanSquaredError(test, targets) }
            if let labels = testLabels { testAccuracy = try Metrics.accuracy(test, labels: labels) }
        }
    }

    enum CodingKeys: String, CodingKey {
        case t, steps
        case trainLoss = "train_loss", trainMSE = "train_mse", testMSE = "test_mse"
        case trainAccuracy = "train_accuracy", testAccuracy = "test_accuracy"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let steps = try c.decodeIfPresent(Int.self, forKey: .steps) {
            time = .steps(steps)
        } else if let t = try? c.decode(Double.self, forKey: .t) {
            time = .flow(t)
        } else if try c.decode(String.self, forKey: .t) == "inf" {
            time = .infinity
        } else {
            throw DecodingError.dataCorruptedError(forKey: .t, in: c, debugDescription: "t must be a number or \"inf\"")
        }
        trainLoss = try c.decode(Double.self, forKey: .trainLoss)
        trainMSE = try c.decode(Double.self, forKey: .trainMSE)
        testMSE = try c.decodeIfPresent(Double.self, forKey: .testMSE)
        trainAccuracy = try c.decodeIfPresent(Double.self, forKey: .trainAccuracy)
        testAccuracy = try c.decodeIfPresent(Double.self, forKey: .testAccuracy)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch time {
        case .flow(let t) where t == .infinity: try c.encode("inf", forKey: .t)
        case .flow(let t): try c.encode(t, forKey: .t)
        case .steps(let s): try c.encode(s, forKey: .steps)
        }
        try c.encode(trainLoss, forKey: .trainLoss)
        try c.encode(trainMSE, forKey: .trainMSE)
        try c.encodeIfPresent(testMSE, forKey: .testMSE)
        try c.encodeIfPresent(trainAccuracy, forKey: .trainAccuracy)
        try c.encodeIfPresent(testAccuracy, forKey: .testAccuracy)
    }
}
