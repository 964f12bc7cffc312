// dist/protocol.hpp: dynamic work distribution over MPI -- one coordinator (rank 0), workers that ask for work.
//
// The unit is a task: an index into a plan that every rank knows (e.g. plan_items), and a group (e.g. the
// setting) whose expensive state a worker keeps between tasks. The coordinator hands out batches of task
// indices, preferring the group a worker already holds; workers return results (values + the group's values)
// together with their next request. Rank 0 may execute tasks too, in a second thread (MPI is only ever called
// from the calling thread: MPI_THREAD_FUNNELED is enough). The wire format is documented in docs/protocol.md.
//
// No global state: the communicator is passed in; nothing here touches MPI_COMM_WORLD.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include <boost/mpi/communicator.hpp>

namespace hs::dist {

struct Task {
    int32_t index = 0;  // into the plan that coordinator and workers share
    int32_t group = 0;  // tasks of one group share expensive state on a worker (a setting's clean run)
};

struct TaskResult {
    int32_t index = 0;
    int32_t rank = 0;                  // who computed it (set by the coordinator)
    double seconds = 0;                // executor time, for the utilisation figures
    std::vector<double> group_values;  // values of the task's group (pi_clean, copy accuracy): checked across ranks
    std::vector<double> values;        // the task's own values
};

// Executes tasks on one rank. Throwing (hs::Error or any std::exception) stops the whole distribution with
// the message, prefixed by the rank.
class Executor {
public:
    virtual ~Executor() = default;
    virtual void run(int32_t index, TaskResult& out) = 0;
    // Shared group state (CoordinatorOptions::share_group_state): the coordinator has one worker make a group's
    // state (prepare_group, then export_group: its bytes, which go to rank 0) and gives those bytes to every other
    // worker that takes the group up (import_group) instead of letting each make it again. import_group must leave
    // the executor exactly as prepare_group would (the distributed sweep: a setting's clean run, bit for bit).
    // The defaults share nothing: run() makes what it needs.
    virtual void prepare_group(int32_t group) {}
    virtual std::vector<char> export_group(int32_t group) { return {}; }
    virtual void import_group(int32_t group, const std::vector<char>& state) {}
};

// The largest GROUP_STATE_DATA message (1 GiB): MPI counts are ints; a 70B setting's PATH state is ~0.8 GB and a
// TOTAL one can pass 2 GB, so states travel in pieces.
constexpr int64_t kMaxStatePiece = int64_t(1) << 30;

struct CoordinatorOptions {
    bool local_worker = true;            // rank 0 executes tasks too (second thread); forced on when alone
    int32_t max_batch = 256;             // tasks per assignment message at most
    double target_batch_seconds = 0.05;  // batch size aims at this much work (from the measured task time)
    // Group commit: BatchEnd runs when no message waits, or after this many messages / seconds of results since
    // the last one (a busy coordinator commits bursts of messages together; an idle one each message at once).
    int32_t commit_max_messages = 64;
    double commit_max_seconds = 0.05;
    // Shared group state (Executor::prepare_group): each group's state is made once, by the first worker that takes
    // the group up, and sent through rank 0 to the others; a worker that takes up a group whose state is being
    // made waits for it. Off: every worker makes the state of each group it takes up. Ignored with one rank.
    bool share_group_state = false;
    // A shared state travels in GROUP_STATE_DATA messages of at most this many bytes (MPI counts are ints; tests
    // set it small to exercise states of many pieces). 1 .. kMaxStatePiece.
    int64_t state_piece_bytes = kMaxStatePiece;
    bool progress = false;               // progress lines: done/total, tasks/s, ETA, per-rank utilisation
    double progress_interval_s = 5;
    std::string label = "dist";
    std::string unit = "items";
    std::ostream* log = nullptr;         // nullptr: std::cerr
};

struct CoordinatorStats {
    int32_t ranks = 0;
    int64_t tasks = 0;
    double seconds = 0;
    int64_t messages_in = 0, messages_out = 0, bytes_in = 0, bytes_out = 0;
    std::vector<int64_t> tasks_per_rank;
    std::vector<double> busy_per_rank;     // executor seconds
    std::vector<int32_t> group_switches;   // how often each rank started a new group (clean runs)
    int64_t states_made = 0, states_sent = 0, state_bytes_sent = 0;  // shared group state: made, given to workers
    double state_wait_seconds = 0;         // workers' time parked until a group's state arrived (sum)
    double tasks_per_second() const { return seconds > 0 ? double(tasks) / seconds : 0.0; }
    std::string utilisation() const;       // "r0 97% r1 95%" (or min/mean/max for many ranks)
};

// Called on rank 0's calling thread for every result, in arrival order. Throwing stops the distribution.
using ResultSink = std::function<void(const TaskResult&)>;
// Called after the sink has had every result of one message (a worker's batch, or what rank 0's own worker
// finished since the last look) -- or of several, when more messages were already waiting (group commit,
// CoordinatorOptions::commit_max_*): where a writer commits them together (one flush per burst). Workers get
// their next assignment before it runs. Throwing stops the distribution.
using BatchEnd = std::function<void()>;

// Rank 0: distributes `tasks` (in their given order within a group) until every result has reached `sink`.
// `local` executes tasks on rank 0 (may be null when other ranks exist). Collective with serve() on every other
// rank of `comm`. Throws hs::Error after stopping every worker when a sink or an executor failed.
CoordinatorStats coordinate(const boost::mpi::communicator& comm, const std::vector<Task>& tasks, Executor* local,
                            const ResultSink& sink, const CoordinatorOptions& options = {},
                            const BatchEnd& batch_end = {});

// Every rank other than 0: executes assigned tasks until the coordinator says stop. Throws hs::Error with the
// coordinator's message when the distribution was stopped by an error (on any rank).
struct ServeOptions {
    int64_t state_piece_bytes = kMaxStatePiece;  // the pieces of the group states this worker sends (as above)
};
void serve(const boost::mpi::communicator& comm, Executor& executor, const ServeOptions& options = {});

// The worker side of a coordinated step whose rank 0 ends by broadcasting its error string (empty: success):
// serve(), then receive rank 0's verdict; throws rank 0's error first, else this rank's own.
void serve_then_sync(const boost::mpi::communicator& comm, Executor& executor, const ServeOptions& options = {});

// Runs f on every rank; if it throws on any rank, every rank throws hs::Error with the first failing rank's
// message ("rank 3: ..." for ranks other than 0). A collective: all ranks must call it.
void collective_step(const boost::mpi::communicator& comm, const std::function<void()>& f);

}  // namespace hs::dist
