import Foundation
import Plots
import NumPyIO
#if canImport(Glibc)
import Glibc
#endif

/// The directory a job writes its results into, with all-or-nothing file replacement.
///
/// Files are first written under temporary names in the directory, each flushed to disk
/// (fsync); `commit` then renames them into place and syncs the directory. A run that
/// fails before `commit` leaves the previous results untouched and removes its
/// temporary files.
///
/// Ownership: a run holds the directory's `DirectoryLock` from `init` to the end of the
/// process, so two runs never write into one directory (the second is refused, 73). The
/// tool replaces or removes only files it wrote: every result's record (summary.json,
/// training.json, converge.json) carries `"tool": "ntk"` and the list of files it wrote,
/// and a file of a result name that no such record in the directory lists is never
/// touched: the run is refused (73) instead. `--out` itself may be a symbolic link
/// (scratch directories often are): the link is followed, and the rules above apply to
/// the directory it names.
public final class OutputDirectory {
    public let path: String
    /// The names of files that mark a finished result; an existing one is only replaced
    /// with `force`.
    public static let resultMarkers = ["summary.json", "kernel.npy"]
    /// Every file name a job may write.
    public static let resultFiles = ["kernel.npy", "eigenvalues.npy", "eigenvectors.npy", "spectrum.csv", "spectrum.svg", "spectrum.png",
                                     "outputs.npy", "outputs2.npy", "summary.json"]
    /// The files that record a result: JSON objects with `"tool": "ntk"` and `"files"`.
    static let recordNames = ["summary.json", "training.json", "converge.json"]
    private var staged: [(temporary: String, final: String)] = []
    /// Names the tool wrote in this directory (earlier runs' commits).
    private var owned: Set<String>? = []
    private var lock: DirectoryLock? = nil

    /// Creates `path` (and parents) if needed and claims it for this run. Refuses (73) a
    /// path that is a file, a directory that cannot be written, one another run holds, one
    /// that already holds a result (a file of `markers`) unless `force`, and one holding a
    /// file named like one of `writes` that the tool did not write.
    public init(path: String, force: Bool, markers: [String] = resultMarkers, writes: [String] = resultFiles) throws(NTKError) {
        self.path = path
        try FileSystem.makeDirectories(path, role: "--out")
        guard access(path, W_OK | X_OK) == 0 else {
            throw NTKError(.cannotCreate, "the output directory \(path) is not writable")
        }
        lock = try DirectoryLock(directory: path, role: "the output directory")
        owned = Self.ownedNames(in: path)
        if !force, let existing = markers.first(where: { FileSystem.exists(path + "/" + $0) }) {
            throw NTKError(.cannotCreate, "--out \(path) already holds a result (\(existing)); pass --force to replace it, or choose another directory")
        }
        for name in writes { try checkReplaceable(name) }
        // Temporaries of an earlier run that died (nobody else holds the lock).
        if let names = try? FileManager.default.contentsOfDirectory(atPath: path) {
            for name in names where Self.isTemporary(name) { unlink(path + "/" + name) }
        }
    }

    /// A directory used only to stage and rename single files (no result checks).
    /// The caller owns the directory and the files it names (no lock, no record).
    init(stagingIn path: String) throws(NTKError) {
        self.path = path
        guard access(path, W_OK | X_OK) == 0 else {
            throw NTKError(.cannotCreate, "the directory \(path) is not writable")
        }
        owned = nil
    }

    /// Refuses (73) when `name` exists here and the tool did not write it.
    func checkReplaceable(_ name: String) throws(NTKError) {
        guard let owned, FileSystem.exists(path + "/" + name), !owned.contains(name) else { return }
        throw NTKError(.cannotCreate, "--out \(path) holds \(name), which ntk did not write; ntk replaces only its own files: move it away, or choose another directory")
    }

    /// Whether `name` is one of the tool's temporary names, `.<file>.partial-<digits>`.
    static func isTemporary(_ name: String) -> Bool {
        guard name.hasPrefix("."), let range = name.range(of: ".partial-", options: .backwards) else { return false }
        let suffix = name[range.upperBound...]
        return !suffix.isEmpty && suffix.allSatisfy(\.isNumber)
    }

    /// The names listed by the tool's result records in `path` (and the records).
    static func ownedNames(in path: String) -> Set<String> {
        var names = Set<String>()
        for record in recordNames {
            guard let data = FileManager.default.contents(atPath: path + "/" + record),
                  let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                  object["tool"] as? String == "ntk", let files = object["files"] as? [String] else { continue }
            names.formUnion(files)
            names.insert(record)
        }
        return names
    }

    /// The names staged so far (for the result record's file list).
    public var stagedNames: [String] { staged.map { ($0.final as NSString).lastPathComponent } }

    /// Renames the staged files into place and syncs the directory, touching nothing else.
    func commitStaged() throws(NTKError) {
        for (_, final) in staged { try checkReplaceable((final as NSString).lastPathComponent) }
        for (temporary, final) in staged {
            if rename(temporary, final) != 0 {
                throw NTKError(.ioError, "cannot move \(temporary) to \(final): \(String(cString: strerror(errno)))")
            }
        }
        staged.removeAll()
        FileSystem.syncDirectory(path)
    }

    /// Writes `data` to a temporary file next to `name`, flushed to disk; it becomes
    /// `name` at `commit`. Throws `ioError` (74) on a failed write (a full disk included)
    /// and `cannotCreate` (73) when the file cannot be created.
    /// Stages a plot as `<base>.svg`, and as `<base>.png` where librsvg can render it.
    /// Returns the names staged.
    @discardableResult
    public func stagePlot(_ base: String, _ plot: SVGPlot) throws(NTKError) -> [String] {
        let svg = plot.render()
        try stage(base + ".svg", Data(svg.utf8))
        guard let png = PNGRenderer.render(svg: svg) else { return [base + ".svg"] }
        try stage(base + ".png", png)
        return [base + ".svg", base + ".png"]
    }

    public func stage(_ name: String, _ data: Data) throws(NTKError) {
        var failure: NTKError? = nil
        data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
            do { try stage(name, parts: [buffer]) } catch let error as NTKError { failure = error } catch { failure = NTKError(.software, "\(error)") }
        }
        if let failure { throw failure }
    }

    /// Stages a float64 .npy file streamed from `values` (no copy of the array is made).
    public func stageNPY(_ name: String, shape: [Int], values: [Double]) throws(NTKError) {
        let header = NPYFormat.header(shape: shape, dtype: .float64)
        var failure: NTKError? = nil
        header.withUnsafeBytes { (h: UnsafeRawBufferPointer) in
            values.withUnsafeBytes { (v: UnsafeRawBufferPointer) in
                do { try stage(name, parts: [h, v]) } catch let error as NTKError { failure = error } catch { failure = NTKError(.software, "\(error)") }
            }
        }
        if let failure { throw failure }
    }

    /// Writes `parts` one after the other to a temporary file next to `name`, flushed
    /// to disk; it becomes `name` at `commit`.
    func stage(_ name: String, parts: [UnsafeRawBufferPointer]) throws(NTKError) {
        try checkReplaceable(name)
        let temporary = "\(path)/.\(name).partial-\(getpid())"
        staged.append((temporary, "\(path)/\(name)"))
        do {
            try FileSystem.writeFile(temporary, parts: parts)
        } catch {
            throw NTKError(error.status, "writing \(path)/\(name) failed: \(error.message); nothing was replaced")
        }
    }

    /// Renames every staged file into place (in staging order, so stage the file that
    /// marks completion last) and syncs the directory.
    /// Result files of an earlier run that were not staged again (say eigenvectors.npy
    /// after a values-only run) are removed, so the directory never mixes two runs; the
    /// completion marker summary.json is removed first and renamed in last.
    /// Only files the tool wrote are removed or replaced (see the type's notes).
    public func commit() throws(NTKError) {
        let stagedNames = Set(staged.map { ($0.final as NSString).lastPathComponent })
        for (_, final) in staged { try checkReplaceable((final as NSString).lastPathComponent) }
        let owned = self.owned ?? []
        if owned.contains("summary.json") { unlink("\(path)/summary.json") }
        for name in Self.resultFiles where !stagedNames.contains(name) && owned.contains(name) { unlink("\(path)/\(name)") }
        try commitStaged()
    }

    /// Releases the claim on the directory (the process's end releases it too).
    public func release() {
        lock?.release()
        lock = nil
    }

    /// Takes a file written elsewhere into this directory's staging (renamed into place
    /// at `commit`, removed by `discard`). It must already be flushed to disk.
    public func adopt(temporary: String, as name: String) {
        staged.append((temporary, "\(path)/\(name)"))
    }

    /// Removes the staged file that would become `name`, and forgets it.
    public func drop(_ name: String) {
        let final = "\(path)/\(name)"
        for (temporary, target) in staged where target == final { unlink(temporary) }
        staged.removeAll { $0.final == final }
    }

    /// Removes staged files that were not committed.
    public func discard() {
        for (temporary, _) in staged { unlink(temporary) }
        staged.removeAll()
    }

    deinit { discard() }
}

extension OutputDirectory {
    /// Writes one file atomically (temporary name, fsync, rename, directory sync).
    /// Refuses (73) to replace an existing file unless `force`.
    public static func writeFile(_ path: String, _ data: Data, force: Bool) throws(NTKError) {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { throw NTKError(.cannotCreate, "\(path) is a directory") }
            if !force { throw NTKError(.cannotCreate, "\(path) already exists; pass --force to replace it") }
        }
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw NTKError(.cannotCreate, "the directory \(directory) does not exist")
        }
        let output = try OutputDirectory(stagingIn: directory)
        try output.stage(url.lastPathComponent, data)
        try output.commitStaged()
    }
}
