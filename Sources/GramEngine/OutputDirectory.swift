import Foundation
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
public final class OutputDirectory {
    public let path: String
    /// The names of files that mark a finished result; an existing one is only replaced
    /// with `force`.
    public static let resultMarkers = ["summary.json", "kernel.npy"]
    /// Every file name a job may write.
    public static let resultFiles = ["kernel.npy", "eigenvalues.npy", "eigenvectors.npy", "outputs.npy", "outputs2.npy", "summary.json"]
    private var staged: [(temporary: String, final: String)] = []

    /// Creates `path` (and parents) if needed. Refuses (73) a path that is a file, a
    /// directory that cannot be written, or one that already holds a result unless
    /// `force`.
    public init(path: String, force: Bool) throws(NTKError) {
        self.path = path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw NTKError(.cannotCreate, "--out \(path) exists and is not a directory")
            }
            if !force, let existing = Self.resultMarkers.first(where: { FileManager.default.fileExists(atPath: path + "/" + $0) }) {
                throw NTKError(.cannotCreate, "--out \(path) already holds a result (\(existing)); pass --force to replace it, or choose another directory")
            }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw NTKError(.cannotCreate, "cannot create the output directory \(path): \(Self.reason(error))")
            }
        }
        guard access(path, W_OK | X_OK) == 0 else {
            throw NTKError(.cannotCreate, "the output directory \(path) is not writable")
        }
    }

    /// A directory used only to stage and rename single files (no result checks).
    init(stagingIn path: String) throws(NTKError) {
        self.path = path
        guard access(path, W_OK | X_OK) == 0 else {
            throw NTKError(.cannotCreate, "the directory \(path) is not writable")
        }
    }

    /// Renames the staged files into place and syncs the directory, touching nothing else.
    func commitStaged() throws(NTKError) {
        for (temporary, final) in staged {
            if rename(temporary, final) != 0 {
                throw NTKError(.ioError, "cannot move \(temporary) to \(final): \(String(cString: strerror(errno)))")
            }
        }
        staged.removeAll()
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }

    /// Writes `data` to a temporary file next to `name`, flushed to disk; it becomes
    /// `name` at `commit`. Throws `ioError` (74) on a failed write (a full disk included)
    /// and `cannotCreate` (73) when the file cannot be created.
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
        let temporary = "\(path)/.\(name).partial-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw NTKError(.cannotCreate, "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        staged.append((temporary, "\(path)/\(name)"))
        var failure: String? = nil
        for buffer in parts where failure == nil && buffer.count > 0 {
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, min(buffer.count - offset, 1 << 30))
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    break
                }
                offset += written
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if close(fd) != 0 && failure == nil { failure = String(cString: strerror(errno)) }
        if let failure {
            throw NTKError(.ioError, "writing \(path)/\(name) failed: \(failure); nothing was replaced")
        }
    }

    /// Renames every staged file into place (in staging order, so stage the file that
    /// marks completion last) and syncs the directory.
    /// Result files of an earlier run that were not staged again (say eigenvectors.npy
    /// after a values-only run) are removed, so the directory never mixes two runs; the
    /// completion marker summary.json is removed first and renamed in last.
    public func commit() throws(NTKError) {
        let stagedNames = Set(staged.map { ($0.final as NSString).lastPathComponent })
        unlink("\(path)/summary.json")
        for name in Self.resultFiles where !stagedNames.contains(name) { unlink("\(path)/\(name)") }
        try commitStaged()
    }

    /// Takes a file written elsewhere into this directory's staging (renamed into place
    /// at `commit`, removed by `discard`). It must already be flushed to disk.
    public func adopt(temporary: String, as name: String) {
        staged.append((temporary, "\(path)/\(name)"))
    }

    /// Removes staged files that were not committed.
    public func discard() {
        for (temporary, _) in staged { unlink(temporary) }
        staged.removeAll()
    }

    deinit { discard() }

    static func reason(_ error: Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return nsError.localizedDescription
    }
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
