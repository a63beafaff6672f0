import Foundation
import NumPyIO

/// The state of an `ntk train` run on disk, so that a long training resumes where it
/// stopped (`--resume`) instead of starting over.
///
/// The directory (`<checkpoint>/training`) holds `manifest.json` (what the run trains:
/// hashes of the inputs, targets, model and initial parameters, the learning rate and the
/// recorded step counts) and `state.npz`: `step` (the steps done), `parameters` (the flat
/// parameters after them) and, per recorded step count s < step, `train_<s>` and
/// `test_<s>` (the outputs recorded then). Rank 0 writes it every `interval` seconds and on a
/// stop request, to a temporary name then renamed, so the state is whole or the previous
/// one. Training is deterministic for a rank count, so a resumed run at the same rank count
/// ends bitwise equal to an uninterrupted one.
struct TrainingCheckpoint {
    struct Manifest: Codable, Equatable {
        var format = "ntk-training-1"
        var data: String
        var targets: String
        var test: String?
        var model: String
        var parameters: String
        var learningRate: Double
        var steps: [Int]

        enum CodingKeys: String, CodingKey {
            case format, data, targets, test, model, parameters, steps
            case learningRate = "learning_rate"
        }
    }

    struct State {
        var step: Int
        var parameters: [Double]
        var train: [Int: [Double]]
        var test: [Int: [Double]]
    }

    let directory: String
    let manifest: Manifest
    /// Seconds between saves (`NTK_TRAIN_CHECKPOINT_SECONDS` overrides the default 60; 0
    /// saves after every step).
    let interval: Double

    var statePath: String { directory + "/state.npz" }
    var manifestPath: String { directory + "/manifest.json" }

    init(directory: String, manifest: Manifest) {
        self.directory = directory
        self.manifest = manifest
        interval = ProcessInfo.processInfo.environment["NTK_TRAIN_CHECKPOINT_SECONDS"].flatMap(Double.init) ?? 60
    }

    /// Rank 0, before training: with `resume`, the saved state when its manifest matches
    /// this run (65 naming the difference when it does not; nil when there is none);
    /// otherwise removes an old state. Creates the directory (73 when it cannot).
    func prepare(resume: Bool) throws(NTKError) -> State? {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw NTKError(.cannotCreate, "cannot create the checkpoint directory \(directory): \(error.localizedDescription)")
        }
        guard resume, let saved = FileManager.default.contents(atPath: manifestPath) else {
            removeFiles()
            return nil
        }
        guard let old = try? JSONDecoder().decode(Manifest.self, from: saved) else {
            throw NTKError(.dataError, "cannot --resume: \(manifestPath) is not a training checkpoint's manifest")
        }
        if old != manifest {
            var differences: [String] = []
            if old.data != manifest.data { differences.append("the training inputs") }
            if old.targets != manifest.targets { differences.append("the targets") }
            if old.test != manifest.test { differences.append("the test inputs") }
            if old.model != manifest.model { differences.append("the model") }
            if old.parameters != manifest.parameters { differences.append("the initial parameters (--seed or --params)") }
            if old.learningRate != manifest.learningRate { differences.append("--learning-rate (\(old.learningRate), now \(manifest.learningRate))") }
            if old.steps != manifest.steps { differences.append("--steps (\(old.steps.map(String.init).joined(separator: ",")), now \(manifest.steps.map(String.init).joined(separator: ",")))") }
            if old.format != manifest.format { differences.append("the checkpoint format") }
            throw NTKError(.dataError, "cannot --resume: the training checkpoint in \(directory) was made with other \(differences.joined(separator: ", ")); rerun without --resume to start over")
        }
        guard let data = FileManager.default.contents(atPath: statePath) else { return nil }
        do {
            let arrays = try NPZFormat.decode(data)
            guard let step = arrays["step"]?.doubles().first, let parameters = arrays["parameters"]?.doubles() else {
                throw NTKError(.dataError, "cannot --resume: \(statePath) lacks the step or the parameters")
            }
            var state = State(step: Int(step), parameters: parameters, train: [:], test: [:])
            // Outputs recorded before the saved step (the one at it is recorded again).
            for s in manifest.steps where s < state.step {
                guard let train = arrays["train_\(s)"] else {
                    throw NTKError(.dataError, "cannot --resume: \(statePath) lacks the outputs recorded at step \(s)")
                }
                state.train[s] = train.doubles()
                if let test = arrays["test_\(s)"] { state.test[s] = test.doubles() }
            }
            return state
        } catch let error as NTKError {
            throw error
        } catch {
            throw NTKError(.dataError, "cannot --resume: \(statePath) is damaged (\(error))")
        }
    }

    /// Rank 0: writes `state` (whole, or the previous state stays). 74 on a failed write.
    func save(_ state: State) throws(NTKError) {
        var arrays: [(name: String, array: NPYArray)] = [
            ("step", NPYArray(shape: [1], doubles: [Double(state.step)])),
            ("parameters", NPYArray(shape: [state.parameters.count], doubles: state.parameters)),
        ]
        for s in state.train.keys.sorted() {
            arrays.append(("train_\(s)", NPYArray(shape: [state.train[s]!.count], doubles: state.train[s]!)))
            if let test = state.test[s] { arrays.append(("test_\(s)", NPYArray(shape: [test.count], doubles: test))) }
        }
        let encoded: Data
        do { encoded = try NPZFormat.encode(arrays) } catch {
            throw NTKError(.software, "cannot encode the training checkpoint: \(error)")
        }
        if !FileManager.default.fileExists(atPath: manifestPath) {
            let text: Data
            do { text = try JSONOutput.encode(manifest) } catch {
                throw NTKError(.software, "cannot encode the training checkpoint's manifest: \(error)")
            }
            try FileSystem.writeFile(manifestPath, parts: [text])
        }
        let temporary = directory + "/.state.npz.partial-\(getpid())"
        try FileSystem.writeFile(temporary, parts: [encoded])
        if rename(temporary, statePath) != 0 {
            let reason = SystemError.text(errno)
            unlink(temporary)
            throw NTKError(.ioError, "cannot save the training checkpoint \(statePath): \(reason)")
        }
        FileSystem.syncDirectory(directory)
    }

    /// Removes the state, the manifest and temporaries a killed save left.
    func removeFiles() {
        unlink(statePath)
        unlink(manifestPath)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(".state.npz.partial-") {
            unlink(directory + "/" + name)
        }
    }

    /// Removes the checkpoint's files, then the directory when nothing else is in it (and,
    /// with `parentToo`, its parent likewise: the default `<out>/checkpoint`).
    func remove(parentToo: Bool) {
        removeFiles()
        rmdir(directory)
        if parentToo { rmdir((directory as NSString).deletingLastPathComponent) }
    }
}
