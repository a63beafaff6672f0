import Foundation
import Testing
import LearningDynamics

/// Properties of the closed form that hold without any reference implementation.
@Suite struct DynamicsPropertyTests {
    /// A deterministic well-conditioned problem: Θ = A Aᵀ / d + I (κ ~ 10), N = 9, M = 4,
    /// k = 3, entries from a fixed linear congruential sequence.
    struct Problem {
        let n = 9, m = 4, k = 3
        var kernel: RowMajorMatrix
        var testKernel: RowMajorMatrix
        var f0: RowMajorMatrix
        var f0Test: RowMajorMatrix
        var y: RowMajorMatrix

        init(shift: Double = 1) {
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            func next() -> Double {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Double(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
            }
            let d = 6
            let features = (0..<(n + m) * d).map { _ in next() }
            func dot(_ i: Int, _ j: Int) -> Double {
                (0..<d).reduce(0) { $0 + features[i * d + $1] * features[j * d + $1] } / Double(d)
            }
            kernel = RowMajorMatrix(rows: n, columns: n)
            for i in 0..<n { for j in 0..<n { kernel[i, j] = dot(i, j) + (i == j ? shift : 0) } }
            testKernel = RowMajorMatrix(rows: m, columns: n)
            for i in 0..<m { for j in 0..<n { testKernel[i, j] = dot(n + i, j) } }
            f0 = RowMajorMatrix(rows: n, columns: k, elements: (0..<n * k).map { _ in 0.3 * next() })
            f0Test = RowMajorMatrix(rows: m, columns: k, elements: (0..<m * k).map { _ in 0.3 * next() })
            y = RowMajorMatrix(rows: n, columns: k, elements: (0..<n * k).map { _ in next() })
        }
    }

    /// Solves the SPD system A X = B by Cholesky (A n x n, B n x k), independently of the
    /// module's eigendecomposition.
    static func choleskySolve(_ a: RowMajorMatrix, _ b: RowMajorMatrix) -> RowMajorMatrix {
        let n = a.rows
        var l = RowMajorMatrix(rows: n, columns: n)
        for j in 0..<n {
            var s = a[j, j]
            for p in 0..<j { s -= l[j, p] * l[j, p] }
            l[j, j] = s.squareRoot()
            for i in (j + 1)..<n {
                var t = a[i, j]
                for p in 0..<j { t -= l[i, p] * l[j, p] }
                l[i, j] = t / l[j, j]
            }
        }
        var x = b
        for c in 0..<b.columns {
            for i in 0..<n {
                var s = x[i, c]
                for p in 0..<i { s -= l[i, p] * x[p, c] }
                x[i, c] = s / l[i, i]
            }
            for i in stride(from: n - 1, through: 0, by: -1) {
                var s = x[i, c]
                for p in (i + 1)..<n { s -= l[p, i] * x[p, c] }
                x[i, c] = s / l[i, i]
            }
        }
        return x
    }

    /// κ(Θ) ~ 10 and ‖Θ*‖ ~ 1, so both routes are accurate to ~κ N ε ≈ 1e-14: 1e-10 is the
    /// requirement with a wide margin.
    @Test("t -> inf is kernel regression: train = Y, test = f0* + Θ* (Θ + δI)⁻¹ (Y − f0), to 1e-10",
          arguments: [DiagonalRegularizer.none, .relative(0.1), .absolute(0.5)])
    func infiniteTime(regularizer: DiagonalRegularizer) throws {
        let p = Problem()
        let dynamics = try GradientDescentMSE(trainKernel: p.kernel, targets: p.y, learningRate: 0.7, regularizer: regularizer)
        let prediction = try dynamics.predictions(at: [.infinity], trainOutputs: p.f0, testKernel: p.testKernel,
                                                  testOutputs: p.f0Test)[0]
        var regularized = p.kernel
        let trace = (0..<p.n).reduce(0) { $0 + p.kernel[$1, $1] }
        for i in 0..<p.n { regularized[i, i] += regularizer.shift(trace: trace, n: p.n) }
        var rhs = p.y
        for i in 0..<p.n { for a in 0..<p.k { rhs[i, a] -= p.f0[i, a] } }
        let alpha = Self.choleskySolve(regularized, rhs)
        var expected = p.f0Test
        for i in 0..<p.m { for a in 0..<p.k { for j in 0..<p.n { expected[i, a] += p.testKernel[i, j] * alpha[j, a] } } }
        #expect(relativeError(prediction.train, p.y) <= 1e-10)
        #expect(relativeError(try #require(prediction.test), expected) <= 1e-10)
        #expect(prediction.trainLoss == 0)
        // A late finite time is already there (slowest mode: exp(-η λ_min t / c) < 1e-30).
        let late = try dynamics.predictions(at: [.flow(1e6)], trainOutputs: p.f0, testKernel: p.testKernel,
                                            testOutputs: p.f0Test)[0]
        #expect(relativeError(try #require(late.test), expected) <= 1e-10)
    }

    @Test("t = 0 and 0 steps return the initial outputs exactly")
    func initial() throws {
        let p = Problem()
        let dynamics = try GradientDescentMSE(trainKernel: p.kernel, targets: p.y)
        for time in [TrainingTime.flow(0), .steps(0)] {
            let prediction = try dynamics.predictions(at: [time], trainOutputs: p.f0, testKernel: p.testKernel,
                                                      testOutputs: p.f0Test)[0]
            #expect(prediction.train == p.f0)
            #expect(prediction.test == p.f0Test)
        }
    }

    /// The iteration and the closed form differ by rounding growing with the step count
    /// (~s ε per step at most): 1e-12 relative after 40 steps.
    @Test("s steps equal s explicit gradient-descent updates, also with an oscillating mode (η λ_max / c > 1)",
          arguments: [0.3, 1.5])
    func discreteSteps(fractionOfMax: Double) throws {
        let p = Problem()
        let probe = try GradientDescentMSE(trainKernel: p.kernel, targets: p.y)
        let eta = fractionOfMax * probe.maxStableLearningRate
        let dynamics = try GradientDescentMSE(trainKernel: p.kernel, targets: p.y, learningRate: eta)
        let c = Double(p.n * p.k)
        var f = p.f0, fTest = p.f0Test
        for s in 1...40 {
            var r = f
            for i in 0..<p.n { for a in 0..<p.k { r[i, a] -= p.y[i, a] } }
            for a in 0..<p.k {
                for i in 0..<p.n {
                    var g = 0.0
                    for j in 0..<p.n { g += p.kernel[i, j] * r[j, a] }
                    f[i, a] -= eta / c * g
                }
                for i in 0..<p.m {
                    var g = 0.0
                    for j in 0..<p.n { g += p.testKernel[i, j] * r[j, a] }
                    fTest[i, a] -= eta / c * g
                }
            }
            if s % 10 == 0 {
                let prediction = try dynamics.predictions(at: [.steps(s)], trainOutputs: p.f0, testKernel: p.testKernel,
                                                          testOutputs: p.f0Test)[0]
                #expect(relativeError(prediction.train, f) <= 1e-12, "steps \(s)")
                #expect(relativeError(try #require(prediction.test), fTest) <= 1e-12, "steps \(s)")
            }
        }
    }

    @Test("the loss decreases monotonically under gradient flow and stable steps; its mode sum is the predictions' loss")
    func lossDecreases() throws {
        let p = Problem()
        let dynamics = try GradientDescentMSE(trainKernel: p.kernel, targets: p.y, learningRate: 2)
        let trajectory = try dynamics.trajectory(trainOutputs: p.f0)
        var previous = trajectory.initialTrainLoss
        for t in [0.5, 1, 2, 5, 10, 50, 100, 1000] {
            let loss = try trajectory.trainLoss(at: .flow(t))
            #expect(loss < previous)
            previous = loss
            let direct = try Metrics.meanSquaredError(trajectory.prediction(at: .flow(t)).train, p.y) / 2
            #expect(abs(direct - loss) <= 1e-13 * trajectory.initialTrainLoss)
        }
        #expect(dynamics.maxStableLearningRate > 2)
        previous = trajectory.initialTrainLoss
        for s in 1...20 {
            let loss = try trajectory.trainLoss(at: .steps(s))
            #expect(loss < previous)
            previous = loss
        }
    }

    @Test("a negative eigenvalue is clamped: its mode stays frozen on train and adds nothing on test")
    func clamp() throws {
        // Θ = diag(2, -1) in the standard basis: mode 2 has λ < 0.
        let kernel = RowMajorMatrix(rows: 2, columns: 2, elements: [2, 0, 0, -1])
        let y = RowMajorMatrix(rows: 2, columns: 1, elements: [1, 1])
        let f0 = RowMajorMatrix(rows: 2, columns: 1, elements: [0, 0])
        let testKernel = RowMajorMatrix(rows: 1, columns: 2, elements: [1, 5])
        let f0Test = RowMajorMatrix(rows: 1, columns: 1, elements: [0])
        let dynamics = try GradientDescentMSE(trainKernel: kernel, targets: y)
        for time in [TrainingTime.flow(3), .infinity, .steps(3)] {
            let prediction = try dynamics.predictions(at: [time], trainOutputs: f0, testKernel: testKernel, testOutputs: f0Test)[0]
            #expect(abs(prediction.train[1, 0]) <= 1e-15, "frozen at \(time)")
            // Only mode 1 (λ = 2, Θ*·e₁ = 1) reaches the test point: test = train[0] / λ.
            #expect(abs(try #require(prediction.test)[0, 0] - prediction.train[0, 0] / 2) <= 1e-15, "\(time)")
            #expect(prediction.trainLoss.isFinite)
        }
    }

    @Test("bad inputs are refused with a message, not a trap")
    func refused() throws {
        let p = Problem()
        #expect(throws: DynamicsError.self) { try GradientDescentMSE(trainKernel: p.testKernel, targets: p.y) }
        #expect(throws: DynamicsError.self) { try GradientDescentMSE(trainKernel: p.kernel, targets: p.f0Test) }
        #expect(throws: DynamicsError.self) { try GradientDescentMSE(trainKernel: p.kernel, targets: p.y, learningRate: 0) }
        #expect(throws: DynamicsError.self) {
            try GradientDescentMSE(trainKernel: p.kernel, targets: p.y, regularizer: .relative(.nan))
        }
        var asymmetric = p.kernel
        asymmetric[0, 1] += 0.5
        #expect(throws: DynamicsError.self) { try GradientDescentMSE(trainKernel: asymmetric, targets: p.y) }
        var nan = p.kernel
        nan[2, 3] = .nan
        #expect(throws: DynamicsError.nonFinite(name: "the train kernel", row: 2, column: 3)) {
            try GradientDescentMSE(trainKernel: nan, targets: p.y)
        }
        let dynamics = try GradientDescentMSE(trainKernel: p.kernel, targets: p.y)
        #expect(throws: DynamicsError.self) { try dynamics.trajectory(trainOutputs: p.f0Test) }
        #expect(throws: DynamicsError.self) { try dynamics.trajectory(trainOutputs: p.f0, testKernel: p.testKernel) }
        #expect(throws: DynamicsError.self) {
            try dynamics.trajectory(trainOutputs: p.f0, testKernel: p.kernel, testOutputs: p.f0Test)
        }
        let trajectory = try dynamics.trajectory(trainOutputs: p.f0)
        #expect(throws: DynamicsError.self) { try trajectory.prediction(at: .flow(-1)) }
        #expect(throws: DynamicsError.self) { try trajectory.prediction(at: .flow(.nan)) }
        #expect(throws: DynamicsError.self) { try trajectory.prediction(at: .steps(-1)) }
        #expect(throws: DynamicsError.labelOutOfRange(index: 1, label: 3, classes: 3)) {
            try RowMajorMatrix.oneHot(labels: [0, 3], classes: 3)
        }
        #expect(throws: DynamicsError.self) { try Metrics.accuracy(p.y, labels: [0]) }
    }

    @Test("metrics encode their time as t (number or \"inf\") or steps and decode back")
    func metricsJSON() throws {
        let p = Problem()
        let dynamics = try GradientDescentMSE(trainKernel: p.kernel, targets: p.y)
        let labels = (0..<p.n).map { $0 % p.k }, testLabels = (0..<p.m).map { $0 % p.k }
        for time in [TrainingTime.flow(2.5), .infinity, .steps(7)] {
            let prediction = try dynamics.predictions(at: [time], trainOutputs: p.f0, testKernel: p.testKernel,
                                                      testOutputs: p.f0Test)[0]
            let metrics = try PredictionMetrics(prediction: prediction, trainTargets: p.y, testTargets: p.f0Test,
                                                trainLabels: labels, testLabels: testLabels)
            let data = try JSONEncoder().encode(metrics)
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            switch time {
            case .flow(let t) where t.isInfinite: #expect(object["t"] as? String == "inf")
            case .flow(let t): #expect(object["t"] as? Double == t)
            case .steps(let s): #expect(object["steps"] as? Int == s)
            }
            #expect(Set(object.keys).isSuperset(of: ["train_loss", "train_mse", "test_mse", "train_accuracy", "test_accuracy"]))
            #expect(try JSONDecoder().decode(PredictionMetrics.self, from: data) == metrics)
            #expect(abs(metrics.trainMSE / 2 - metrics.trainLoss) <= 1e-14 * max(1, metrics.trainLoss))
        }
    }
}
