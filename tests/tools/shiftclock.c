/* An LD_PRELOAD shim for `make test-hours`: the wall clock (CLOCK_REALTIME, gettimeofday, time)
 * reads SHIFTCLOCK_SECONDS later (or earlier); monotonic clocks, sleeps and timed waits are left
 * alone, so threads, timeouts and the event loop behave exactly as without it. Every process of
 * the run inherits it, servers and workers included. (libfaketime shifts the monotonic clock too,
 * or breaks clock_nanosleep when told not to, which hangs or fails Python's waits.) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long shift_ns(void) {
    static int ready = 0;
    static long long ns = 0;
    if (!ready) {
        const char *s = getenv("SHIFTCLOCK_SECONDS");
        ns = s ? (long long)(atof(s) * 1e9) : 0;
        ready = 1;
    }
    return ns;
}

static int (*real_clock_gettime)(clockid_t, struct timespec *);

int clock_gettime(clockid_t id, struct timespec *ts) {
    if (!real_clock_gettime) real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && ts && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        long long total = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + shift_ns();
        ts->tv_sec = total / 1000000000LL;
        ts->tv_nsec = total % 1000000000LL;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
