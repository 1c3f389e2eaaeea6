// Diagnostics and time helpers. Nothing here allocates: the monitor runs for as long as
// its container, and after start-up its memory stays what it was.
#define _GNU_SOURCE
#include "monitor.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char diag_id[65];

void diag_set_id(const char *id) {
    size_t n = strlen(id);
    if (n >= sizeof diag_id) n = sizeof diag_id - 1;
    memcpy(diag_id, id, n);
    diag_id[n] = '\0';
}

void diag(const char *fmt, ...) {
    char line[1024];
    // Before the config is read there is no id yet.
    int at = diag_id[0] != '\0' ? snprintf(line, sizeof line, "berth-monitor %s: ", diag_id)
                                : snprintf(line, sizeof line, "berth-monitor: ");
    if (at < 0) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + at, sizeof line - (size_t)at, fmt, ap);
    va_end(ap);
    size_t len = (size_t)at + (n < 0 ? 0 : (size_t)n);
    // Truncated messages keep their newline.
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    // One write per line, so that it never interleaves with anything else sharing the
    // file; a failure has nowhere to be reported.
    ssize_t w;
    do { w = write(2, line, len); } while (w < 0 && errno == EINTR);
}

const char *errno_text(int err) {
    const char *text = strerrordesc_np(err);
    return text != NULL ? text : "Unknown error";
}

int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's civil_from_days).
// Not gmtime_r: its first call reads /etc/localtime through tzset and allocates.
static void civil_from_days(int64_t z, int64_t *year, unsigned int *month, unsigned int *day) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned int doe = (unsigned int)(z - era * 146097);
    unsigned int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned int mp = (5 * doy + 2) / 153;
    *day = doy - (153 * mp + 2) / 5 + 1;
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = (int64_t)yoe + era * 400 + (*month <= 2);
}

static void put_digits(char *out, uint64_t value, int width) {
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

void format_rfc3339_nano(int64_t ns, char *out) {
    if (ns < 0) ns = 0;
    int64_t secs = ns / 1000000000;
    int64_t days = secs / 86400;
    int64_t rem = secs % 86400;
    int64_t year;
    unsigned int month, day;
    civil_from_days(days, &year, &month, &day);
    // YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ
    put_digits(out, (uint64_t)year, 4);
    out[4] = '-';
    put_digits(out + 5, month, 2);
    out[7] = '-';
    put_digits(out + 8, day, 2);
    out[10] = 'T';
    put_digits(out + 11, (uint64_t)(rem / 3600), 2);
    out[13] = ':';
    put_digits(out + 14, (uint64_t)(rem / 60 % 60), 2);
    out[16] = ':';
    put_digits(out + 17, (uint64_t)(rem % 60), 2);
    out[19] = '.';
    put_digits(out + 20, (uint64_t)(ns % 1000000000), 9);
    out[29] = 'Z';
    out[30] = '\0';
}
