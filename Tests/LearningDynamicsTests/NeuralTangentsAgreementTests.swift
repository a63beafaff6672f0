import Foundation
import Testing
import LearningDynamics
import LinearAlgebra

/// Agreement with neural-tangents' `nt.predict.gradient_descent_mse` (float64) and with the
/// step-by-step gradient-descent references of the fixtures.
///
/// Tolerance 1e-9 relative (max |Δ| / max |reference|), the requirement. Both sides are the
/// same closed form on different eigensolvers (LAPACK dsyevd here, numpy/jax eigh there);
/// eigenvector differences are ~N ε ‖Θ‖ / gap and the test predictions divide by λ_i, so the
/// expected differences are ~κ N ε ≈ 1e-12 for the fixtures' κ <= 1.7e3. A convention
/// mismatch (c = N instead of N k, η not multiplying t, the regularizer's scale, the clamp)
/// changes the values by O(1).
@Suite struct NeuralTangentsAgreementTests {
    static let cases = DynamicsFixtures.cases
    static let tolerance = 1e-9

    @Test("the fixture set is present: k = 1 and k > 1, labels, both regularizer scales, a clamped eigenvalue")
    func present() {
        #expect(Self.cases.count >= 5)
        #expect(Self.cases.contains { $0.k == 1 } && Self.cases.contains { $0.k > 1 })
        #expect(Self.cases.contains { $0.labels })
        #expect(Self.cases.contains { $0.diagReg > 0 && $0.diagRegAbsoluteScale })
        #expect(Self.cases.contains { $0.diagReg > 0 && !$0.diagRegAbsoluteScale })
        #expect(Self.cases.contains { !$0.hasSolve })
    }

    @Test("gradient-flow predictions at finite times, t = inf and the Cholesky solve agree with neural-tangents to 1e-9",
          arguments: cases)
    func flow(fixture: DynamicsFixtures.Case) throws {
        let dynamics = try fixture.dynamics()
        let times = try fixture.vector("times.npy").map(TrainingTime.flow) + [.infinity]
        let predictions = try dynamics.predictions(at: times, trainOutputs: fixture.matrix("f0_train.npy"),
                                                   testKernel: fixture.matrix("kernel_test.npy"),
                                                   testOutputs: fixture.matrix("f0_test.npy"))
        let train = try fixture.matrices("train_times.npy") + [fixture.matrix("train_inf.npy")]
        let test = try fixture.matrices("test_times.npy") + [fixture.matrix("test_inf.npy")]
        var worstTrain = 0.0, worstTest = 0.0
        for (i, prediction) in predictions.enumerated() {
            let testPrediction = try #require(prediction.test)
            let eTrain = relativeError(prediction.train, train[i]), eTest = relativeError(testPrediction, test[i])
            #expect(eTrain <= Self.tolerance, "\(fixture) train at \(prediction.time): \(eTrain)")
            #expect(eTest <= Self.tolerance, "\(fixture) test at \(prediction.time): \(eTest)")
            worstTrain = max(worstTrain, eTrain)
            worstTest = max(worstTest, eTest)
        }
        // t = +inf is also neural-tangents' t=None (Cholesky solve, no eigendecomposition):
        // train = Y exactly, test = f0* + Θ* (Θ + δI)⁻¹ (Y − f0).
        var worstSolve = 0.0
        if fixture.hasSolve, let last = predictions.last, let lastTest = last.test {
            worstSolve = max(relativeError(last.train, try fixture.matrix("train_solve.npy")),
                             relativeError(lastTest, try fixture.matrix("test_solve.npy")))
            #expect(worstSolve <= Self.tolerance, "\(fixture) t = inf vs Cholesky: \(worstSolve)")
        }
        print("dynamics fixture \(fixture) flow (\(fixture.infReference) as inf): max rel error train \(worstTrain), test \(worstTest), solve \(worstSolve)")
    }

    @Test("discrete-step predictions agree with step-by-step gradient descent to 1e-9", arguments: cases)
    func steps(fixture: DynamicsFixtures.Case) throws {
        let dynamics = try fixture.dynamics()
        let steps = try fixture.integers("steps.npy").map(TrainingTime.steps)
        let predictions = try dynamics.predictions(at: steps, trainOutputs: fixture.matrix("f0_train.npy"),
                                                   testKernel: fixture.matrix("kernel_test.npy"),
                                                   testOutputs: fixture.matrix("f0_test.npy"))
        let train = try fixture.matrices("train_steps.npy"), test = try fixture.matrices("test_steps.npy")
        var worst = 0.0
        for (i, prediction) in predictions.enumerated() {
            let testPrediction = try #require(prediction.test)
            let e = max(relativeError(prediction.train, train[i]), relativeError(testPrediction, test[i]))
            #expect(e <= Self.tolerance, "\(fixture) at \(prediction.time): \(e)")
            worst = max(worst, e)
        }
        print("dynamics fixture \(fixture) steps: max rel error \(worst)")
    }

    /// Θ + δI = V diag(λ + δ) Vᵀ: the shortcut skips a second eigendecomposition, so the two
    /// routes differ by the eigensolver's rounding on the shifted matrix, ~κ N ε (1e-11 is
    /// a margin of ~100 over the worst case here).
    @Test("dynamics built from Θ's own eigendecomposition equal those that decompose Θ + δI", arguments: cases)
    func fromEigen(fixture: DynamicsFixtures.Case) throws {
        let kernel = try fixture.matrix("kernel_train.npy")
        let eigen = try SymmetricEigen.compute(matrix: kernel.elements, n: kernel.rows, vectors: true)
        let shortcut = try GradientDescentMSE(eigen: eigen, targets: fixture.matrix("y_train.npy"),
                                              learningRate: fixture.learningRate, regularizer: fixture.regularizer)
        let direct = try fixture.dynamics()
        #expect(relativeError(shortcut.diagonalShift, direct.diagonalShift) <= 1e-14)
        let times = try fixture.vector("times.npy").map(TrainingTime.flow) + [.infinity, .steps(10)]
        let inputs = (try fixture.matrix("f0_train.npy"), try fixture.matrix("kernel_test.npy"), try fixture.matrix("f0_test.npy"))
        let a = try shortcut.predictions(at: times, trainOutputs: inputs.0, testKernel: inputs.1, testOutputs: inputs.2)
        let b = try direct.predictions(at: times, trainOutputs: inputs.0, testKernel: inputs.1, testOutputs: inputs.2)
        for (x, y) in zip(a, b) {
            #expect(relativeError(x.train, y.train) <= 1e-11, "\(fixture) train at \(x.time)")
            #expect(relativeError(try #require(x.test), try #require(y.test)) <= 1e-11, "\(fixture) test at \(x.time)")
        }
    }

    /// The losses are sums of squares of the references' residuals, so their rounding is
    /// relative to L(0): 1e-12 of L(0) is ~1e4 ε, far below any formula error.
    @Test("losses: the mode sum equals the loss of the predictions and of the references", arguments: cases)
    func losses(fixture: DynamicsFixtures.Case) throws {
        let dynamics = try fixture.dynamics()
        let y = try fixture.matrix("y_train.npy")
        let trajectory = try dynamics.trajectory(trainOutputs: fixture.matrix("f0_train.npy"))
        let scale = trajectory.initialTrainLoss
        let flow = try fixture.vector("times.npy").map(TrainingTime.flow)
        let steps = try fixture.integers("steps.npy").map(TrainingTime.steps)
        let references = try fixture.vector("loss_times.npy") + fixture.vector("loss_steps.npy")
        var worst = 0.0
        for (time, reference) in zip(flow + steps, references) {
            let prediction = try trajectory.prediction(at: time)
            let direct = try Metrics.meanSquaredError(prediction.train, y) / 2
            let loss = try trajectory.trainLoss(at: time)
            #expect(loss == prediction.trainLoss)
            let e = max(abs(loss - direct), abs(loss - reference)) / scale
            #expect(e <= 1e-12, "\(fixture) loss at \(time): \(e)")
            worst = max(worst, e)
        }
        print("dynamics fixture \(fixture) loss: max |Δ| / L(0) \(worst)")
    }

    /// MSE to 1e-9 of the initial MSE: a prediction error δ moves the MSE by ~2 rms(f − Y) δ,
    /// so once training has driven the train MSE to ~1e-30 only an absolute scale makes
    /// sense. Accuracies exactly (argmax of predictions that agree to 1e-9 and have no
    /// near-ties).
    @Test("MSE and accuracy per time equal numpy's on neural-tangents' predictions", arguments: cases)
    func metrics(fixture: DynamicsFixtures.Case) throws {
        let dynamics = try fixture.dynamics()
        let times = try fixture.vector("times.npy").map(TrainingTime.flow)
        let trainLabels = fixture.labels ? try fixture.integers("labels_train.npy") : nil
        let testLabels = fixture.labels ? try fixture.integers("labels_test.npy") : nil
        if let trainLabels, let classes = fixture.classes {
            #expect(try RowMajorMatrix.oneHot(labels: trainLabels, classes: classes) == fixture.matrix("y_train.npy"))
            #expect(try RowMajorMatrix.oneHot(labels: testLabels ?? [], classes: classes) == fixture.matrix("y_test.npy"))
        }
        let predictions = try dynamics.predictions(at: times, trainOutputs: fixture.matrix("f0_train.npy"),
                                                   testKernel: fixture.matrix("kernel_test.npy"),
                                                   testOutputs: fixture.matrix("f0_test.npy"))
        let trainMSE = try fixture.vector("mse_train_times.npy"), testMSE = try fixture.vector("mse_test_times.npy")
        var worst = 0.0
        for (i, prediction) in predictions.enumerated() {
            let metrics = try PredictionMetrics(prediction: prediction, trainTargets: fixture.matrix("y_train.npy"),
                                                testTargets: fixture.matrix("y_test.npy"),
                                                trainLabels: trainLabels, testLabels: testLabels)
            let trainError = abs(metrics.trainMSE - trainMSE[i]) / max(trainMSE[0], trainMSE[i])
            let testError = abs(try #require(metrics.testMSE) - testMSE[i]) / max(testMSE[0], testMSE[i])
            #expect(trainError <= Self.tolerance, "\(fixture) train MSE at \(prediction.time)")
            #expect(testError <= Self.tolerance, "\(fixture) test MSE at \(prediction.time)")
            worst = max(worst, trainError, testError)
            if fixture.labels {
                #expect(metrics.trainAccuracy == (try fixture.vector("accuracy_train_times.npy"))[i])
                #expect(metrics.testAccuracy == (try fixture.vector("accuracy_test_times.npy"))[i])
            } else {
                #expect(metrics.trainAccuracy == nil && metrics.testAccuracy == nil)
            }
        }
        print("dynamics fixture \(fixture) MSE: max |Δ| / MSE(0) \(worst)")
    }

    /// The diagonal shift is r·trace/N or r, computed the same way on both sides (1e-14
    /// relative: one sum of N terms). The learning-rate bound: neural-tangents divides by
    /// λ_max + 1e-12 and uses scipy's eigvalsh, so 1e-10 relative.
    @Test("regularizer shift, largest stable learning rate and time constants", arguments: cases)
    func scalars(fixture: DynamicsFixtures.Case) throws {
        let dynamics = try fixture.dynamics()
        #expect(dynamics.normalization == fixture.normalization)
        #expect(relativeError(dynamics.diagonalShift, fixture.diagonalShift) <= 1e-14)
        #expect(relativeError(dynamics.maxStableLearningRate, fixture.maxLearningRate) <= 1e-10)
        // The eigenvalues of Θ + δI against numpy's eigvalsh: absolute N ε λ_max scale.
        let reference = try fixture.vector("eigenvalues_regularized.npy")
        let lambdaMax = reference.last ?? 1
        for (ours, theirs) in zip(dynamics.eigen.values, reference) {
            #expect(abs(ours - theirs) <= 1e-13 * lambdaMax)
        }
        for (tau, lambda) in zip(dynamics.timeConstants, dynamics.eigen.values) {
            if lambda > 0 {
                #expect(relativeError(tau, fixture.normalization / (fixture.learningRate * lambda)) <= 1e-15)
            } else {
                #expect(tau == .infinity)
            }
        }
    }
}
