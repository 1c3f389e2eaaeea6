// berth: the Berth CLI. Thin: parsing lives in CLI.swift, the calls in BerthClient.
#if canImport(Glibc)
import Glibc
#endif

SignalForwarder.start()
exit(await CLI.main(Array(CommandLine.arguments.dropFirst())))
