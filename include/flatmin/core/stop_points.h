#pragma once
/// Named instants of a process at which a test can stop it, so that "stop anywhere, then resume" is tested
/// at every instant on purpose rather than by the luck of a timer.
///
///   FLATMIN_STOP_AT=NAME@N[:kill][,NAME@N[:kill]...]
///
/// raises SIGTERM (or SIGKILL with ":kill") when the process reaches instant NAME with index N. The
/// instants and their indices:
///   step          after the step with this global number (1-based) of a training run, before the stop poll
///   eval          before the epoch-end scoring of this epoch (1-based)
///   measure       before the epoch-end measurements of this epoch (1-based)
///   checkpoint    inside this process's N-th checkpoint write: the bytes are written, not yet renamed
///   sweep-train   a sweep has just started its N-th training process
///   sweep-measure a sweep has just started its N-th measurement process
/// Global indices (step, epoch) make a resumed run pass an instant it already passed no more: a sweep whose
/// every run stops at step 8 resumes each once. Without the variable an instant costs one branch.

#include <cstdint>

namespace flatmin {

/// Instant `name` with index `index`; index 0 = this process's count of passes through `name` (1-based).
/// Throws flatmin::Error on a malformed FLATMIN_STOP_AT.
void stop_point(const char* name, int64_t index = 0);

/// How often this process passed instant `name` since the last reset (counted only while FLATMIN_STOP_AT
/// is set): a test learns how many instants a run has.
int64_t stop_point_passes(const char* name);

/// Re-reads FLATMIN_STOP_AT and restarts the counts (tests that stop several runs in one process).
void reset_stop_points();

}  // namespace flatmin
