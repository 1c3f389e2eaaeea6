// Keeps the Swift runtime out of berth-shm-probe, exactly as Sources/berth-monitor/noswift.c
// does for the monitor (see there for why): swiftc links swiftrt.o into every executable,
// and these two no-ops satisfy its only references to libswiftCore, so a static link
// pulls in none of it.
#include <stdbool.h>

void swift_addNewDSOImage(const void *sections);
bool _swift_backtrace_isThunkFunction(const char *mangled_name);

void swift_addNewDSOImage(const void *sections) { (void)sections; }

bool _swift_backtrace_isThunkFunction(const char *mangled_name) {
    (void)mangled_name;
    return false;
}
