// berth-fuzz: the libFuzzer target for everything a peer's bytes go through (frame
// decoding, message decoding and re-encoding, spec validation). The checks are
// WireFuzz.check (Fuzz/BerthFuzzCore), shared with Tests/BerthWireTests/FuzzRegressionTests.
//
// Built two ways (docs/fuzzing.md):
//   deploy/fuzz.sh: -sanitize=fuzzer -D BERTH_FUZZ: libFuzzer supplies main() and calls
//     LLVMFuzzerTestOneInput; the fallback main below is compiled out (two mains would not link).
//   a plain swift build: the fallback main runs the same function on files named on the command
//     line (berth-fuzz FILE|DIR...), or writes the seed corpus (berth-fuzz --write-seeds DIR).
#if canImport(Glibc)
import Glibc
#endif
import BerthFuzzCore

/// libFuzzer's entry point: one input; a failed check or a trap is a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let failures = WireFuzz.check(Array(UnsafeBufferPointer(start: data, count: size)))
    if !failures.isEmpty {
        fatalError("berth-fuzz: check failed:\n" + failures.joined(separator: "\n"))
    }
    return 0
}

#if BERTH_FUZZ
/// libFuzzer's driver (`int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*cb)(const uint8_t *, size_t))`).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// SwiftPM links every Swift executable with `--defsym main=berth_fuzz_main` (the entry point
/// is renamed so that tests can link executable modules), so this symbol, not libFuzzer's own
/// main(), is the program's start: it hands over to libFuzzer's driver.
@_cdecl("berth_fuzz_main")
public func berthFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzz(data, size) }
}
#else
@main
enum BerthFuzzMain {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.first == "--write-seeds" {
            guard args.count == 2 else { usage() }
            writeSeeds(to: args[1])
            return
        }
        guard !args.isEmpty, !args.contains(where: { $0.hasPrefix("-") }) else { usage() }
        var count = 0
        for path in args.flatMap(files) {
            guard let bytes = readFile(path) else { fail("cannot read \(path)") }
            _ = bytes.withUnsafeBufferPointer { buffer in
                fuzz(buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!, buffer.count)
            }
            count += 1
        }
        print("berth-fuzz: \(count) inputs checked (spec validation \(WireFuzz.validatesSpecs ? "on" : "off"))")
    }

    static func usage() -> Never {
        fail("usage: berth-fuzz FILE|DIR...   (run the checks on inputs)\n       berth-fuzz --write-seeds DIR  (write the seed corpus)\n"
             + "built with deploy/fuzz.sh it is a libFuzzer binary instead (-help=1)")
    }

    static func fail(_ message: String) -> Never {
        let line = Array((message + "\n").utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        exit(2)
    }

    /// `path` itself, or the regular files in it when it is a directory, sorted.
    static func files(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [path] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if !name.hasPrefix(".") && name != "README.md" { names.append(path + "/" + name) }
        }
        return names.sorted()
    }

    static func readFile(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n > 0 { bytes += buffer[0..<n] }
            if n < buffer.count { return ferror(f) == 0 ? bytes : nil }
        }
    }

    static func writeSeeds(to dir: String) {
        mkdir(dir, 0o755)
        for seed in WireFuzz.seeds() {
            let path = dir + "/" + seed.name
            guard let f = fopen(path, "wb") else { fail("cannot write \(path)") }
            let written = seed.bytes.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, f) }
            fclose(f)
            guard written == seed.bytes.count else { fail("short write to \(path)") }
        }
        print("berth-fuzz: \(WireFuzz.seeds().count) seeds written to \(dir)")
    }
}
#endif
