// Crash points: named places in the crash-safe paths (GC, artifact removal, checkpoint commit)
// where a test can make the process SIGKILL itself, so that "a crash right here loses nothing"
// is checked at the exact step instead of at a random moment that almost never lands inside a
// microsecond window.
//
// LORATRF_CRASH_POINT=NAME:N (read once, at the first call) kills the process with SIGKILL the
// Nth time (1-based) CrashPoint(NAME) is reached. Unset or malformed: every call is a cheap
// no-op. Nothing but tests sets it; the names are listed where they are used.
//
// LORATRF_CRASH_POINT_ONCE=PATH, set as well, makes the crash happen in one process only: the
// first to reach the armed hit creates PATH and dies; any process that finds PATH there goes
// on. Processes that inherit one environment (the ranks of every attempt an agent starts) so
// crash once, and the attempt after the crash runs through.
//
// Threading: thread-safe.
#pragma once

namespace loratrf {

void CrashPoint(const char* name);

}  // namespace loratrf
