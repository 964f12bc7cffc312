// Coordinator / worker protocol (protocol.hpp, docs/protocol.md).
#include "dist/protocol.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include <boost/mpi/collectives.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>

#include "util/error.hpp"
#include "util/progress.hpp"
#include "util/timer.hpp"

namespace hs::dist {

namespace {

enum Tag : int { kRequest = 101, kAssign = 102, kStop = 103, kError = 104, kGroupState = 105, kGroupStateData = 106 };

// ASSIGN header: what the worker does before the batch's tasks (shared group state).
enum Action : int32_t { kRun = 0, kMakeState = 1, kStateFollows = 2 };

// ---- byte packing (native layout: every rank runs the same binary on the same kind of machine)
struct Packer {
    std::vector<char> buf;
    template <class T>
    void put(const T& v) {
        const size_t o = buf.size();
        buf.resize(o + sizeof(T));
        std::memcpy(buf.data() + o, &v, sizeof(T));
    }
    void put_doubles(const std::vector<double>& v) {
        put(int32_t(v.size()));
        const size_t o = buf.size();
        buf.resize(o + v.size() * sizeof(double));
        if (!v.empty()) std::memcpy(buf.data() + o, v.data(), v.size() * sizeof(double));
    }
};

struct Unpacker {
    const char* p;
    const char* end;
    template <class T>
    T get() {
        check(p + sizeof(T) <= end, "dist: truncated message");
        T v;
        std::memcpy(&v, p, sizeof(T));
        p += sizeof(T);
        return v;
    }
    std::vector<double> get_doubles() {
        const int32_t n = get<int32_t>();
        check(n >= 0 && p + size_t(n) * sizeof(double) <= end, "dist: truncated message");
        std::vector<double> v(static_cast<size_t>(n));
        if (n) std::memcpy(v.data(), p, size_t(n) * sizeof(double));
        p += size_t(n) * sizeof(double);
        return v;
    }
};

// REQUEST payload: int32 n, then per result: int32 index, double seconds, doubles group_values, doubles values.
void pack_results(Packer& pk, const std::vector<TaskResult>& rs) {
    pk.put(int32_t(rs.size()));
    for (const TaskResult& r : rs) {
        pk.put(r.index);
        pk.put(r.seconds);
        pk.put_doubles(r.group_values);
        pk.put_doubles(r.values);
    }
}

std::vector<TaskResult> unpack_results(const std::vector<char>& b, int32_t rank) {
    Unpacker u{b.data(), b.data() + b.size()};
    const int32_t n = u.get<int32_t>();
    std::vector<TaskResult> out(size_t(std::max(n, 0)));
    for (TaskResult& r : out) {
        r.index = u.get<int32_t>();
        r.seconds = u.get<double>();
        r.group_values = u.get_doubles();
        r.values = u.get_doubles();
        r.rank = rank;
    }
    return out;
}

// Poll with a short spin, then sleep with exponential back-off (20 us .. 80 us): a waiting rank must not eat a
// core that a computing rank (or rank 0's own worker thread) needs, which matters when ranks share cores.
class Backoff {
public:
    void reset() { n_ = 0; }
    void wait() {
        if (++n_ <= 64) return;
        const int shift = std::min(n_ - 64, 3);
        std::this_thread::sleep_for(std::chrono::microseconds(10 << shift));  // 20 us .. 80 us
    }

private:
    int n_ = 0;
};

// Receives the message that `st` describes (from a successful probe) as bytes.
std::vector<char> recv_bytes(MPI_Comm c, const MPI_Status& st) {
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    std::vector<char> b(size_t(std::max(count, 0)));
    MPI_Recv(b.data(), count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, c, MPI_STATUS_IGNORE);
    return b;
}

void send_bytes(MPI_Comm c, int dest, int tag, const void* data, size_t n) {
    MPI_Send(const_cast<void*>(data), int(n), MPI_BYTE, dest, tag, c);
}

// A group's state: GROUP_STATE (int32 group, int64 size, int64 piece), then the bytes in GROUP_STATE_DATA messages
// of `piece` bytes each (the last one shorter). The sender chooses the piece (StateTransfer: 1 GiB by default, as MPI
// counts are ints; a 70B setting's PATH state is ~0.8 GB, a TOTAL one can pass 2 GB); the receiver reads it here.
void send_state(MPI_Comm c, int dest, int32_t group, const std::vector<char>& bytes, int64_t piece) {
    check(piece >= 1 && piece <= kMaxStatePiece, "dist: state piece of ", piece, " bytes (1 .. ", kMaxStatePiece, ")");
    Packer pk;
    pk.put(group);
    pk.put(int64_t(bytes.size()));
    pk.put(piece);
    send_bytes(c, dest, kGroupState, pk.buf.data(), pk.buf.size());
    for (size_t o = 0; o < bytes.size(); o += size_t(piece))
        send_bytes(c, dest, kGroupStateData, bytes.data() + o, std::min(size_t(piece), bytes.size() - o));
}

// The rest of a group's state after its GROUP_STATE header `b` (received from `source`): (group, bytes).
std::pair<int32_t, std::vector<char>> recv_state_data(MPI_Comm c, int source, const std::vector<char>& b) {
    Unpacker u{b.data(), b.data() + b.size()};
    const int32_t group = u.get<int32_t>();
    const int64_t size = u.get<int64_t>();
    const int64_t piece = u.get<int64_t>();
    check(size >= 0, "dist: bad group state size ", size, " from rank ", source);
    check(piece >= 1 && piece <= kMaxStatePiece, "dist: bad group state piece ", piece, " from rank ", source);
    std::vector<char> bytes(static_cast<size_t>(size));
    for (size_t o = 0; o < bytes.size(); o += size_t(piece)) {
        const int n = int(std::min(size_t(piece), bytes.size() - o));
        MPI_Status st;
        MPI_Recv(bytes.data() + o, n, MPI_BYTE, source, kGroupStateData, c, &st);
        int got = 0;
        MPI_Get_count(&st, MPI_BYTE, &got);
        check(got == n, "dist: group ", group, " state piece at byte ", o, " from rank ", source, " has ", got,
              " bytes, not ", n);
    }
    return {group, std::move(bytes)};
}

// Waits (polling with back-off) for a message from `source` on `c`.
MPI_Status wait_message(MPI_Comm c, int source) {
    Backoff bo;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(source, MPI_ANY_TAG, c, &flag, &st);
        if (flag) return st;
        bo.wait();
    }
}

std::string what_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (...) {
        return "unknown exception";
    }
}

// Rank 0's own worker: a thread that executes the batches the coordinator gives it. It never calls MPI.
class LocalWorker {
public:
    explicit LocalWorker(Executor& ex) : ex_(ex), thread_([this] { loop(); }) {}
    ~LocalWorker() { stop(); }
    void stop() {
        {
            std::lock_guard<std::mutex> g(m_);
            stop_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }
    // A batch, after the group action (kMakeState: make the group's state and hand it back through take_states;
    // kStateFollows: install `state`).
    void give(const std::vector<int32_t>& batch, int32_t action = kRun, int32_t group = -1,
              std::shared_ptr<const std::vector<char>> state = nullptr) {
        {
            std::lock_guard<std::mutex> g(m_);
            if (action != kRun) in_.push_back(Job{-1, action, group, std::move(state)});
            for (int32_t i : batch) in_.push_back(Job{i, kRun, -1, nullptr});
        }
        cv_.notify_all();
    }
    // Group states made since the last call.
    std::vector<std::pair<int32_t, std::vector<char>>> take_states() {
        std::lock_guard<std::mutex> g(m_);
        std::vector<std::pair<int32_t, std::vector<char>>> r;
        r.swap(states_);
        return r;
    }
    // Results finished since the last call; the error text if the executor threw.
    std::vector<TaskResult> take(std::string& error) {
        std::lock_guard<std::mutex> g(m_);
        std::vector<TaskResult> r;
        r.swap(out_);
        if (!error_.empty() && error.empty()) error = error_;
        return r;
    }

private:
    void loop() {
        std::unique_lock<std::mutex> lk(m_);
        for (;;) {
            cv_.wait(lk, [&] { return stop_ || !in_.empty(); });
            if (stop_) return;
            const Job job = std::move(in_.front());
            in_.pop_front();
            lk.unlock();
            TaskResult r;
            r.index = job.index;
            std::vector<char> made;
            std::string err;
            Timer timer;
            try {
                if (job.action == kMakeState) {
                    ex_.prepare_group(job.group);
                    made = ex_.export_group(job.group);
                } else if (job.action == kStateFollows) {
                    ex_.import_group(job.group, *job.state);
                } else {
                    ex_.run(job.index, r);
                }
            } catch (...) {
                err = what_of(std::current_exception());
            }
            lk.lock();
            if (!err.empty()) {
                error_ = err;
                in_.clear();
            } else if (job.action == kMakeState) {
                states_.emplace_back(job.group, std::move(made));
            }
            if (err.empty() && job.action != kRun) group_seconds_ += timer.seconds();
            if (err.empty() && job.action == kRun) {
                r.seconds += group_seconds_;  // the group action's seconds count as the next task's
                group_seconds_ = 0;
                out_.push_back(std::move(r));
            }
        }
    }

    struct Job {
        int32_t index = -1;  // a task, or -1 for a group action
        int32_t action = kRun, group = -1;
        std::shared_ptr<const std::vector<char>> state;
    };
    Executor& ex_;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<Job> in_;
    std::vector<TaskResult> out_;
    std::vector<std::pair<int32_t, std::vector<char>>> states_;
    double group_seconds_ = 0;
    std::string error_;
    bool stop_ = false;
    std::thread thread_;  // last: starts after the members above exist
};

}  // namespace

std::string CoordinatorStats::utilisation() const {
    std::ostringstream os;
    os.setf(std::ios::fixed);
    os.precision(0);
    const size_t n = busy_per_rank.size();
    auto pct = [&](size_t r) { return seconds > 0 ? 100.0 * busy_per_rank[r] / seconds : 0.0; };
    if (n <= 8) {
        for (size_t r = 0; r < n; ++r) os << (r ? " " : "") << "r" << r << " " << pct(r) << "%";
    } else {
        double lo = 1e300, hi = 0, sum = 0;
        for (size_t r = 0; r < n; ++r) lo = std::min(lo, pct(r)), hi = std::max(hi, pct(r)), sum += pct(r);
        os << "min " << lo << "% mean " << sum / double(n) << "% max " << hi << "% over " << n << " ranks";
    }
    return os.str();
}

CoordinatorStats coordinate(const boost::mpi::communicator& comm, const std::vector<Task>& tasks, Executor* local,
                            const ResultSink& sink, const CoordinatorOptions& opt, const BatchEnd& batch_end) {
    check(comm.rank() == 0, "dist: coordinate() runs on rank 0");
    // A private duplicate (collective with serve()): no message of this session can mix with any other traffic.
    const boost::mpi::communicator session(comm, boost::mpi::comm_duplicate);
    MPI_Comm c = MPI_Comm(session);
    const int W = comm.size();
    const bool use_local = local && (opt.local_worker || W == 1);
    check(use_local || W > 1, "dist: a coordinator alone needs a local executor");

    CoordinatorStats stats;
    stats.ranks = W;
    stats.tasks_per_rank.assign(size_t(W), 0);
    stats.busy_per_rank.assign(size_t(W), 0.0);
    stats.group_switches.assign(size_t(W), 0);
    Timer timer;

    // Queues per group, in the given order.
    int32_t G = 0;
    for (const Task& t : tasks) G = std::max(G, t.group + 1);
    std::vector<std::deque<int32_t>> queue(static_cast<size_t>(G));
    for (const Task& t : tasks) {
        check(t.group >= 0, "dist: negative task group");
        queue[size_t(t.group)].push_back(t.index);
    }
    const int64_t total = int64_t(tasks.size());
    int64_t unassigned = total, done = 0;
    std::vector<int32_t> cur_group(size_t(W), -1), on_group(size_t(G), 0);
    const int32_t n_workers = (W - 1) + (use_local ? 1 : 0);
    double sum_seconds = 0;
    int64_t sum_tasks = 0;

    // Shared group state: per group none -> making (one worker makes it) -> ready (rank 0 holds the bytes until the
    // group has no unassigned task left); workers that take up a group while it is being made wait for it.
    const bool share = opt.share_group_state && W > 1;
    enum class Share { none, making, ready };
    std::vector<Share> share_of(static_cast<size_t>(G), Share::none);
    std::vector<std::shared_ptr<const std::vector<char>>> state(static_cast<size_t>(G));
    std::vector<std::vector<std::pair<int, double>>> waiting(static_cast<size_t>(G));  // (rank, since)
    std::vector<char> needs_state(size_t(W), 0);
    struct Assignment {
        std::vector<int32_t> items;
        int32_t action = kRun, group = -1;
        std::shared_ptr<const std::vector<char>> state;
        bool wait = false;  // the group's state is being made: the worker waits for it (no items taken)
    };

    auto take_batch = [&](int r) {
        Assignment a;
        if (unassigned == 0) return a;
        int32_t g = cur_group[size_t(r)];
        bool takes_up = needs_state[size_t(r)] != 0;
        if (g < 0 || queue[size_t(g)].empty()) {
            takes_up = true;
            // The group with the most remaining tasks per worker already on it (lowest index on ties).
            int32_t best = -1;
            double best_score = -1;
            for (int32_t k = 0; k < G; ++k) {
                if (queue[size_t(k)].empty()) continue;
                const double s = double(queue[size_t(k)].size()) / double(1 + on_group[size_t(k)]);
                if (s > best_score) best = k, best_score = s;
            }
            if (g >= 0) --on_group[size_t(g)];
            g = best;
            cur_group[size_t(r)] = g;
            ++on_group[size_t(g)];
            ++stats.group_switches[size_t(r)];
        }
        a.group = g;
        if (share && takes_up) {
            if (share_of[size_t(g)] == Share::making) {
                needs_state[size_t(r)] = 1;
                waiting[size_t(g)].emplace_back(r, timer.seconds());
                a.wait = true;
                return a;
            }
            needs_state[size_t(r)] = 0;
            if (share_of[size_t(g)] == Share::none) {
                share_of[size_t(g)] = Share::making;
                a.action = kMakeState;
            } else {
                a.action = kStateFollows;
                a.state = state[size_t(g)];
                ++stats.states_sent;  // to a remote worker, or to rank 0's own
                stats.state_bytes_sent += int64_t(a.state->size());
            }
        }
        int64_t n = 1;
        if (sum_tasks > 0) {
            const double per = sum_seconds / double(sum_tasks);
            n = per > 0 ? int64_t(opt.target_batch_seconds / per) : int64_t(opt.max_batch);
        }
        // Guided self-scheduling: never more than half of a fair share of what is left.
        n = std::min<int64_t>(n, std::max<int64_t>(1, unassigned / (2 * std::max(1, n_workers))));
        n = std::clamp<int64_t>(n, 1, std::max(1, opt.max_batch));
        auto& q = queue[size_t(g)];
        while (int64_t(a.items.size()) < n && !q.empty()) {
            a.items.push_back(q.front());
            q.pop_front();
        }
        unassigned -= int64_t(a.items.size());
        if (q.empty()) state[size_t(g)].reset();  // nobody takes the group up again: its bytes can go
        return a;
    };

    std::string error;
    auto accept = [&](const TaskResult& r) {
        stats.tasks_per_rank[size_t(r.rank)] += 1;
        stats.busy_per_rank[size_t(r.rank)] += r.seconds;
        sum_seconds += r.seconds;
        ++sum_tasks;
        ++done;
        if (!error.empty()) return;
        try {
            sink(r);
        } catch (...) {
            error = what_of(std::current_exception());
        }
    };
    // The writer's commit of every result accepted since the last one (group commit: see commit_if_due).
    int32_t pending_messages = 0;
    double pending_since = 0;
    auto note_pending = [&] {
        if (pending_messages++ == 0) pending_since = timer.seconds();
    };
    auto end_batch = [&] {
        if (pending_messages == 0) return;
        pending_messages = 0;
        if (!error.empty() || !batch_end) return;
        try {
            batch_end();
        } catch (...) {
            error = what_of(std::current_exception());
        }
    };
    // Commit when nothing else is waiting (idle: at once), or when the burst is long enough.
    auto commit_if_due = [&](bool more_waiting) {
        if (pending_messages == 0) return;
        if (!more_waiting || pending_messages >= std::max(1, opt.commit_max_messages) ||
            timer.seconds() - pending_since >= opt.commit_max_seconds)
            end_batch();
    };

    std::ostream& log = opt.log ? *opt.log : std::cerr;
    double last_report = 0;
    auto report = [&](bool final) {
        if (!opt.progress || total == 0) return;
        const double t = timer.seconds();
        if (!final && t - last_report < opt.progress_interval_s) return;
        last_report = t;
        stats.seconds = t;
        std::string line = final ? Progress::format_summary(opt.label, done, total, t, opt.unit)
                                 : Progress::format_line(opt.label, done, total, t, opt.unit);
        log << line << " | busy: " << stats.utilisation() << "\n" << std::flush;
    };

    std::vector<char> stopped(size_t(W), 0), parked(size_t(W), 0);
    stopped[0] = 1;
    auto send_stop = [&](int r) {
        send_bytes(c, r, kStop, error.data(), error.size());
        ++stats.messages_out;
        stats.bytes_out += int64_t(error.size());
        stopped[size_t(r)] = 1;
    };
    // ASSIGN: int32 action, int32 group, int32[] tasks; with kStateFollows the group's state right after it.
    auto send_assignment = [&](int r, const Assignment& a) {
        std::vector<int32_t> msg = {a.action, a.group};
        msg.insert(msg.end(), a.items.begin(), a.items.end());
        send_bytes(c, r, kAssign, msg.data(), msg.size() * sizeof(int32_t));
        ++stats.messages_out;
        stats.bytes_out += int64_t(msg.size() * sizeof(int32_t));
        if (a.action == kStateFollows) {
            send_state(c, r, a.group, *a.state, opt.state_piece_bytes);
            stats.bytes_out += int64_t(a.state->size());
        }
    };

    std::unique_ptr<LocalWorker> lw;
    bool local_waiting = false;  // rank 0's own worker waits for a group's state
    int64_t local_outstanding = 0;
    auto give_local = [&](Assignment a) {
        local_outstanding = int64_t(a.items.size());
        lw->give(a.items, a.action, a.group, std::move(a.state));
    };

    // A group's state has arrived (from a worker, or made by rank 0's own): keep it, serve whoever waits for it.
    auto state_arrived = [&](int32_t g, std::vector<char> bytes) {
        check(g >= 0 && g < G && share_of[size_t(g)] == Share::making, "dist: unexpected state of group ", g);
        ++stats.states_made;
        share_of[size_t(g)] = Share::ready;
        if (!queue[size_t(g)].empty()) state[size_t(g)] = std::make_shared<const std::vector<char>>(std::move(bytes));
        std::vector<std::pair<int, double>> w;
        w.swap(waiting[size_t(g)]);
        for (const auto& [r, since] : w) {
            stats.state_wait_seconds += timer.seconds() - since;
            if (!error.empty()) {  // the run is stopping: the waiting worker gets STOP at the end
                if (r != 0) parked[size_t(r)] = 1;
                continue;
            }
            Assignment a = take_batch(r);
            if (a.wait) continue;  // now waits for another group's state
            if (r == 0) {
                local_waiting = false;
                if (!a.items.empty()) give_local(std::move(a));
            } else if (a.items.empty()) {
                parked[size_t(r)] = 1;  // no work left: answered at the end
            } else {
                send_assignment(r, a);
            }
        }
    };

    // One message from a remote worker: its results and its next request, its error, or a group's state.
    auto handle = [&](const MPI_Status& st) {
        const int r = st.MPI_SOURCE;
        std::vector<char> b = recv_bytes(c, st);
        ++stats.messages_in;
        stats.bytes_in += int64_t(b.size());
        if (st.MPI_TAG == kGroupState) {
            auto [g, bytes] = recv_state_data(c, r, b);
            stats.bytes_in += int64_t(bytes.size());
            state_arrived(g, std::move(bytes));
            return;
        }
        if (st.MPI_TAG == kError) {
            if (error.empty()) error = "rank " + std::to_string(r) + ": " + std::string(b.begin(), b.end());
            send_stop(r);
            return;
        }
        check(st.MPI_TAG == kRequest, "dist: unexpected message tag ", st.MPI_TAG, " from rank ", r);
        const std::vector<TaskResult> results = unpack_results(b, r);
        for (const TaskResult& res : results) accept(res);
        if (!results.empty()) note_pending();
        if (error.empty() && unassigned > 0) {
            const Assignment a = take_batch(r);
            if (!a.wait) send_assignment(r, a);  // a waiting worker is answered when the state arrives
        } else if (error.empty()) {
            parked[size_t(r)] = 1;  // no work left: answered at the end, with the final status
        } else {
            send_stop(r);
        }
    };

    if (use_local) lw = std::make_unique<LocalWorker>(*local);
    Backoff bo;
    while (done < total && error.empty()) {
        bool busy = false;
        if (lw && local_outstanding == 0 && !local_waiting && unassigned > 0) {
            Assignment a = take_batch(0);
            if (a.wait)
                local_waiting = true;
            else
                give_local(std::move(a));
            busy = true;
        }
        if (W > 1) {
            int flag = 0;
            MPI_Status st;
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, c, &flag, &st);
            if (flag) {
                handle(st);
                busy = true;
            }
        }
        if (lw) {
            for (auto& [g, bytes] : lw->take_states()) {  // before the results of the tasks that followed
                state_arrived(g, std::move(bytes));
                busy = true;
            }
            std::string lerr;
            std::vector<TaskResult> rs = lw->take(lerr);
            for (TaskResult& r : rs) {
                r.rank = 0;
                --local_outstanding;
                accept(r);
            }
            if (!rs.empty()) note_pending();
            if (!lerr.empty() && error.empty()) error = "rank 0: " + lerr;
            if (!rs.empty()) busy = true;
        }
        // more waiting: another message already here (probe without receiving)
        bool more = false;
        if (pending_messages > 0 && W > 1) {
            int flag = 0;
            MPI_Status st;
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, c, &flag, &st);
            more = flag != 0;
        }
        commit_if_due(more);
        report(false);
        if (busy)
            bo.reset();
        else
            bo.wait();
    }
    end_batch();  // the last results
    if (lw) lw->stop();
    for (auto& w : waiting)  // stopped by an error while they waited for a state: they get STOP below
        for (const auto& rw : w)
            if (rw.first != 0) parked[size_t(rw.first)] = 1;
    // Every remote worker ends with a request (or an error) that is answered with STOP.
    // Workers stopped early only by an error; the others wait (parked) for the final status, so that every rank
    // learns of an error that happens after its last item.
    for (int r = 1; r < W; ++r) {
        while (!stopped[size_t(r)] && !parked[size_t(r)]) handle(wait_message(c, r));  // unassigned is 0 here
        if (!stopped[size_t(r)]) send_stop(r);
    }
    stats.tasks = done;
    stats.seconds = timer.seconds();
    report(true);
    if (!error.empty()) throw Error(error);
    return stats;
}

void serve(const boost::mpi::communicator& comm, Executor& ex, const ServeOptions& opt) {
    check(comm.rank() != 0, "dist: serve() runs on ranks other than 0");
    const boost::mpi::communicator session(comm, boost::mpi::comm_duplicate);
    MPI_Comm c = MPI_Comm(session);
    Packer pk;
    pack_results(pk, {});
    send_bytes(c, 0, kRequest, pk.buf.data(), pk.buf.size());
    for (;;) {
        const MPI_Status st = wait_message(c, 0);
        std::vector<char> b = recv_bytes(c, st);
        if (st.MPI_TAG == kStop) {
            if (!b.empty()) throw Error(std::string(b.begin(), b.end()));
            return;
        }
        check(st.MPI_TAG == kAssign, "dist: unexpected message tag ", st.MPI_TAG, " from the coordinator");
        check(b.size() >= 2 * sizeof(int32_t), "dist: truncated assignment");
        int32_t head[2];  // action, group
        std::memcpy(head, b.data(), sizeof head);
        const size_t n = b.size() / sizeof(int32_t) - 2;
        std::vector<TaskResult> results(n);
        std::string err;
        Timer group_timer;  // the group action's seconds count as the first task's (busy figures, batch sizes)
        try {
            if (head[0] == kStateFollows) {
                MPI_Status hs_st;
                MPI_Probe(0, kGroupState, c, &hs_st);
                const std::vector<char> hb = recv_bytes(c, hs_st);
                auto [g, bytes] = recv_state_data(c, 0, hb);
                ex.import_group(g, bytes);
            } else if (head[0] == kMakeState) {
                ex.prepare_group(head[1]);
                // sent at once (before this batch's tasks): workers waiting for it start now
                send_state(c, 0, head[1], ex.export_group(head[1]), opt.state_piece_bytes);
            }
        } catch (...) {
            err = what_of(std::current_exception());
        }
        const double group_seconds = head[0] == kRun ? 0.0 : group_timer.seconds();
        for (size_t i = 0; i < n && err.empty(); ++i) {
            std::memcpy(&results[i].index, b.data() + (i + 2) * sizeof(int32_t), sizeof(int32_t));
            try {
                ex.run(results[i].index, results[i]);
            } catch (...) {
                err = what_of(std::current_exception());
            }
        }
        if (n > 0) results[0].seconds += group_seconds;
        if (!err.empty()) {
            send_bytes(c, 0, kError, err.data(), err.size());
            continue;  // the coordinator answers with STOP (and its message)
        }
        pk.buf.clear();
        pack_results(pk, results);
        send_bytes(c, 0, kRequest, pk.buf.data(), pk.buf.size());
    }
}

void serve_then_sync(const boost::mpi::communicator& comm, Executor& executor, const ServeOptions& options) {
    std::string error;
    try {
        serve(comm, executor, options);
    } catch (const std::exception& e) {
        error = e.what();
    }
    std::string root_error;
    boost::mpi::broadcast(comm, root_error, 0);
    if (!root_error.empty()) throw Error(root_error);
    if (!error.empty()) throw Error(error);
}

void collective_step(const boost::mpi::communicator& comm, const std::function<void()>& f) {
    std::string err;
    try {
        f();
    } catch (...) {
        err = what_of(std::current_exception());
    }
    std::vector<std::string> all;
    boost::mpi::all_gather(comm, err, all);
    for (size_t r = 0; r < all.size(); ++r)
        if (!all[r].empty()) throw Error(r == 0 ? all[r] : "rank " + std::to_string(r) + ": " + all[r]);
}

}  // namespace hs::dist
