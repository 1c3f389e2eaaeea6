// Keeps the Swift runtime out of berth-monitor.
//
// SwiftPM links every executable through swiftc, C ones included, and swiftc always adds
// swiftrt.o, whose start-up constructor registers the image's Swift metadata sections
// with swift_addNewDSOImage and which keeps a reference to _swift_backtrace_isThunkFunction.
// Those two references are the only reason libswiftCore would be linked: dynamically it
// costs the monitor about 4 MiB of RSS (libswiftCore, libstdc++ and their start-up),
// statically (the monitor is linked with -static-executable, see Package.swift) 9 MiB
// of binary. This program has no Swift metadata to register, so defining the two symbols
// here, as no-ops, satisfies swiftrt.o and no archive member of libswiftCore.a is pulled
// in. Should a future swiftrt.o reference more of the runtime, libswiftCore.a members
// come back: the link then fails on a duplicate of these two or the binary grows, and
// the memory test in MonitorTests notices the latter.
#include <stdbool.h>

void swift_addNewDSOImage(const void *sections);
bool _swift_backtrace_isThunkFunction(const char *mangled_name);

void swift_addNewDSOImage(const void *sections) { (void)sections; }

bool _swift_backtrace_isThunkFunction(const char *mangled_name) {
    (void)mangled_name;
    return false;
}
