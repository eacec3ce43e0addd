// StreamPool's per-tick bookkeeping in C++ (included by bindings.cpp after its helpers; registered
// by register_pool). supermel/pool.py calls these three functions on the native route:
//
//   pool_push   push_many's chunks (a Python list of 1-D arrays) checked and written into the
//               pool's ring in one crossing: per chunk the buffer protocol (no copy, no
//               concatenation), the finiteness test, the backlog test and the ring write (with
//               the row's mirror); returns the chunks it did not take, with a reason code.
//   pool_due    which frames of which stream the step computes: the streams in rotation order,
//               each stream's complete frames capped by max_frames_per_step, compacted to the
//               streams that get frames (ids, slots, first frame, count, column, head frames).
//   pool_gather those frames gathered from the ring rows by (slot, start) and computed by the
//               plan's gather kernel (the same kernel as Plan.gather: bit-identical frames) into
//               the step's output block; then the per-slot frame counters advanced.
//
// Every index that forms a pointer is checked here (slots against the arrays' rows, starts against
// the ring's row length, columns against the output), whatever the Python side checked before.

#include <nanobind/stl/tuple.h>

#include <tuple>
#include <utility>

namespace {

// Per-chunk outcome of pool_push (0: taken, or empty).
enum PoolPushCode : int { PUSH_TAKEN = 0, PUSH_UNKNOWN = 1, PUSH_NOT_FINITE = 2, PUSH_OVER_BACKLOG = 3, PUSH_OTHER = 4 };

// Whether a buffer-protocol format string names T in native byte order ("f", "@f", "=f", "<f" on
// a little-endian machine; "d" likewise).
template <class T>
bool native_format(const char* f) {
    if (f == nullptr) return false;
    const char want = sizeof(T) == 4 ? 'f' : 'd';
    if (f[0] == '@' || f[0] == '=') ++f;
    else if (f[0] == '<') {
        const uint16_t probe = 1;
        unsigned char first;
        std::memcpy(&first, &probe, 1);
        if (first != 1) return false;  // big-endian machine: '<' is not native
        ++f;
    }
    return f[0] == want && f[1] == '\0';
}

//: Chunks ahead whose samples pool_push prefetches.
constexpr size_t PREFETCH_AHEAD = 2;
//: Chunks ahead whose ring lines pool_push prefetches for writing.
constexpr size_t PREFETCH_WRITE_AHEAD = 4;

// The ring lines a chunk of `m` samples will be written to, from sample position p of its row
// (a prefetch for writing: the ring is larger than the caches, each tick writes a fresh part of
// each row, and a write into a line not in the cache waits for the line first).
template <class T>
inline void prefetch_write(T* row, int64_t p, int64_t m, int64_t C) {
#if defined(__GNUC__) || defined(__clang__)
    const int64_t e = std::min<int64_t>(p + m, C);
    const char* a = reinterpret_cast<const char*>(row + p);
    const char* b = reinterpret_cast<const char*>(row + e);
    for (a = reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(a) & ~std::uintptr_t(63)); a < b; a += 64) __builtin_prefetch(a, 1, 3);
#else
    (void)row;
    (void)p;
    (void)m;
    (void)C;
#endif
}

inline void prefetch_chunk(const void* p, int64_t bytes) {
#if defined(__GNUC__) || defined(__clang__)
    const char* c = static_cast<const char*>(p);
    for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 3);
#else
    (void)p;
    (void)bytes;
#endif
}

struct PushItem {
    Py_buffer view;
    bool held = false;
    int64_t index = 0, slot = 0, m = 0, at = 0, waiting = 0;
    int code = PUSH_TAKEN;
};

// One int64 1-D contiguous array of at least `rows` values (the pool's per-slot counters).
void check_counters(const InArray& a, int64_t rows, const char* name) {
    if (!is<int64_t>(a.dtype()) || a.ndim() != 1 || (a.shape(0) > 1 && a.stride(0) != 1) || static_cast<int64_t>(a.shape(0)) < rows ||
        reinterpret_cast<std::uintptr_t>(a.data()) % alignof(int64_t))
        fail(std::string(name) + " must be a contiguous 1-D int64 array with a value per ring row");
}
void check_counters(const OutArray& a, int64_t rows, const char* name) {
    if (!is<int64_t>(a.dtype()) || a.ndim() != 1 || (a.shape(0) > 1 && a.stride(0) != 1) || static_cast<int64_t>(a.shape(0)) < rows ||
        reinterpret_cast<std::uintptr_t>(a.data()) % alignof(int64_t))
        fail(std::string(name) + " must be a writeable contiguous 1-D int64 array with a value per ring row");
}

template <class T>
nb::list pool_push_impl(OutArray& ring, OutArray& n_arr, const InArray& t_arr, PyObject* chunks, const std::vector<int64_t>& slots, PyObject* ndarray_type,
                        int64_t C, int64_t L, int64_t head, int64_t s0, int64_t hop, int64_t tail_keep, bool check_finite) {
    const int64_t rows = static_cast<int64_t>(ring.shape(0)), rs = static_cast<int64_t>(ring.stride(0));
    const Py_ssize_t count = PyList_GET_SIZE(chunks);
    int64_t* n = static_cast<int64_t*>(n_arr.data());
    const int64_t* t = static_cast<const int64_t*>(t_arr.data());
    std::vector<PushItem> items(static_cast<size_t>(count));
    // release every buffer however this function ends
    struct Release {
        std::vector<PushItem>& items;
        ~Release() {
            for (auto& it : items)
                if (it.held) PyBuffer_Release(&it.view);
        }
    } release_all{items};
    bool any_write = false;
    for (Py_ssize_t i = 0; i < count; ++i) {
        PushItem& it = items[static_cast<size_t>(i)];
        it.index = i;
        const int64_t slot = slots[static_cast<size_t>(i)];
        if (slot < 0) {
            it.code = PUSH_UNKNOWN;
            continue;
        }
        if (slot >= rows) fail("a slot lies outside the ring");
        it.slot = slot;
        PyObject* c = PyList_GET_ITEM(chunks, i);
        if (Py_TYPE(c) != reinterpret_cast<PyTypeObject*>(ndarray_type) || PyObject_GetBuffer(c, &it.view, PyBUF_STRIDES | PyBUF_FORMAT) != 0) {
            PyErr_Clear();
            it.code = PUSH_OTHER;
            continue;
        }
        it.held = true;
        const Py_buffer& v = it.view;
        if (v.ndim != 1 || v.itemsize != static_cast<Py_ssize_t>(sizeof(T)) || !native_format<T>(v.format) ||
            (v.shape[0] > 1 && v.strides[0] != static_cast<Py_ssize_t>(sizeof(T))) || reinterpret_cast<std::uintptr_t>(v.buf) % alignof(T)) {
            it.code = PUSH_OTHER;
            continue;
        }
        it.m = static_cast<int64_t>(v.shape[0]);
        if (it.m == 0) continue;  // taken: nothing to write
        const int64_t ns = n[slot], ts = t[slot];
        const int64_t keep_from = ts < head ? 0 : std::max<int64_t>(0, std::min<int64_t>(s0 + ts * hop, ns - tail_keep));
        it.at = ns;
        it.waiting = ns + it.m - keep_from;
        if (it.waiting > C - L) it.code = PUSH_OVER_BACKLOG;  // (decided after the finiteness test, as push() does)
        any_write = true;
    }
    if (any_write) {
        T* base = static_cast<T*>(ring.data());
        std::vector<PushItem*> todo;
        todo.reserve(items.size());
        for (auto& it : items)
            if (it.m > 0 && (it.code == PUSH_TAKEN || it.code == PUSH_OVER_BACKLOG)) todo.push_back(&it);
        nb::gil_scoped_release unlock;
        // a server's chunks are seldom in the cache: fetch the samples of the chunk PREFETCH_AHEAD places
        // on while this one is tested and copied (measured: ~25% off a tick's pool_push, one core)
        constexpr size_t ahead = PREFETCH_AHEAD;
        constexpr size_t wahead = PREFETCH_WRITE_AHEAD;
        for (size_t q = 0; q < ahead && q < todo.size(); ++q) prefetch_chunk(todo[q]->view.buf, todo[q]->m * static_cast<int64_t>(sizeof(T)));
        for (size_t q = 0; q < wahead && q < todo.size(); ++q) prefetch_write(base + todo[q]->slot * rs, todo[q]->at % C, todo[q]->m, C);
        for (size_t q = 0; q < todo.size(); ++q) {
            if (q + ahead < todo.size()) prefetch_chunk(todo[q + ahead]->view.buf, todo[q + ahead]->m * static_cast<int64_t>(sizeof(T)));
            if (q + wahead < todo.size()) prefetch_write(base + todo[q + wahead]->slot * rs, todo[q + wahead]->at % C, todo[q + wahead]->m, C);
            PushItem& it = *todo[q];
            const T* y = static_cast<const T*>(it.view.buf);
            if (check_finite && !finite_run(y, it.m)) {
                it.code = PUSH_NOT_FINITE;
                continue;
            }
            if (it.code != PUSH_TAKEN) continue;
            // m <= C - L < C here (the backlog test): at most one wrap (memmove: a chunk may be a view of the ring)
            T* row = base + it.slot * rs;
            const int64_t m = it.m, p = it.at % C, e = p + m;
            if (e <= C) {
                std::memmove(row + p, y, static_cast<size_t>(m) * sizeof(T));
            } else {
                std::memmove(row + p, y, static_cast<size_t>(C - p) * sizeof(T));
                std::memmove(row, y + (C - p), static_cast<size_t>(e - C) * sizeof(T));
            }
            if (p < L || e > C) std::memcpy(row + C, row, static_cast<size_t>(L) * sizeof(T));
            n[it.slot] = it.at + m;
        }
    }
    nb::list refused;
    for (const auto& it : items)
        if (it.code != PUSH_TAKEN) refused.append(nb::make_tuple(it.index, it.code, it.waiting));
    return refused;
}

// pool_push's arguments other than the chunks and slots, checked; the ring's dtype (true: float32).
bool check_push_args(const OutArray& ring, const OutArray& n_arr, const InArray& t_arr, nb::handle chunks, nb::handle ndarray_type, int64_t C, int64_t L,
                     int64_t head, int64_t hop, int64_t tail_keep) {
    if (ring.ndim() != 2 || C < 1 || L < 0 || L > C || static_cast<int64_t>(ring.shape(1)) != C + L ||
        (ring.shape(0) > 0 && ((ring.shape(1) > 1 && ring.stride(1) != 1) || ring.stride(0) < 0)))
        fail("the ring must be a 2-D (rows, C + L) array with unit stride along its rows");
    if (hop < 1 || head < 0 || tail_keep < 0) fail("hop >= 1, head >= 0, tail_keep >= 0 required");
    const int64_t rows = static_cast<int64_t>(ring.shape(0));
    check_counters(n_arr, rows, "n");
    check_counters(t_arr, rows, "t");
    if (!PyList_Check(chunks.ptr())) fail("chunks must be a list");
    if (!PyType_Check(ndarray_type.ptr())) fail("ndarray_type must be a type");
    const bool f32 = is<float>(ring.dtype());
    if (!f32 && !is<double>(ring.dtype())) fail("the ring must be float32 or float64");
    if (reinterpret_cast<std::uintptr_t>(ring.data()) % (f32 ? alignof(float) : alignof(double))) fail("misaligned ring");
    return f32;
}

nb::list pool_push(OutArray ring, OutArray n_arr, const InArray& t_arr, nb::handle chunks, nb::handle slots, nb::handle ndarray_type, int64_t C,
                   int64_t L, int64_t head, int64_t s0, int64_t hop, int64_t tail_keep, bool check_finite) {
    const bool f32 = check_push_args(ring, n_arr, t_arr, chunks, ndarray_type, C, L, head, hop, tail_keep);
    if (!PyList_Check(slots.ptr()) || PyList_GET_SIZE(chunks.ptr()) != PyList_GET_SIZE(slots.ptr())) fail("chunks and slots must be lists of one length");
    const Py_ssize_t count = PyList_GET_SIZE(slots.ptr());
    std::vector<int64_t> sv(static_cast<size_t>(count));
    for (Py_ssize_t i = 0; i < count; ++i) {
        PyObject* s = PyList_GET_ITEM(slots.ptr(), i);
        if (s == Py_None) {
            sv[static_cast<size_t>(i)] = -1;
            continue;
        }
        const long long slot = PyLong_AsLongLong(s);
        if (slot == -1 && PyErr_Occurred()) throw nb::python_error();
        if (slot < 0 || slot >= static_cast<int64_t>(ring.shape(0))) fail("a slot lies outside the ring");
        sv[static_cast<size_t>(i)] = slot;
    }
    if (f32) return pool_push_impl<float>(ring, n_arr, t_arr, chunks.ptr(), sv, ndarray_type.ptr(), C, L, head, s0, hop, tail_keep, check_finite);
    return pool_push_impl<double>(ring, n_arr, t_arr, chunks.ptr(), sv, ndarray_type.ptr(), C, L, head, s0, hop, tail_keep, check_finite);
}

// Outcomes of pool_push_ids other than a list of refused chunks (nothing written).
enum PoolIdsCode : int { IDS_DUPLICATE = 1, IDS_IN_PYTHON = 2 };

// pool_push with stream ids in place of slots: ids (a list of exact ints, one per chunk) looked up
// in slot_of (the pool's {id: slot} dict of its open streams), each id at most once. Returns
// pool_push's list, or IDS_DUPLICATE (an id twice) or IDS_IN_PYTHON (an id that is not an exact
// int, or not open: the caller checks and reports in Python), those two before anything is written.
nb::object pool_push_ids(OutArray ring, OutArray n_arr, const InArray& t_arr, nb::handle chunks, nb::handle ids, nb::handle slot_of, nb::handle ndarray_type,
                         int64_t C, int64_t L, int64_t head, int64_t s0, int64_t hop, int64_t tail_keep, bool check_finite) {
    const bool f32 = check_push_args(ring, n_arr, t_arr, chunks, ndarray_type, C, L, head, hop, tail_keep);
    if (!PyList_Check(ids.ptr()) || PyList_GET_SIZE(chunks.ptr()) != PyList_GET_SIZE(ids.ptr())) fail("chunks and ids must be lists of one length");
    if (!PyDict_CheckExact(slot_of.ptr())) fail("slot_of must be a dict");
    const int64_t rows = static_cast<int64_t>(ring.shape(0));
    const Py_ssize_t count = PyList_GET_SIZE(ids.ptr());
    std::vector<int64_t> sv(static_cast<size_t>(count));
    std::vector<unsigned char> seen(static_cast<size_t>(rows), 0);
    for (Py_ssize_t i = 0; i < count; ++i) {
        PyObject* id = PyList_GET_ITEM(ids.ptr(), i);
        if (!PyLong_CheckExact(id)) return nb::int_(static_cast<int>(IDS_IN_PYTHON));
        PyObject* s = PyDict_GetItemWithError(slot_of.ptr(), id);  // (borrowed)
        if (s == nullptr) {
            if (PyErr_Occurred()) throw nb::python_error();
            return nb::int_(static_cast<int>(IDS_IN_PYTHON));
        }
        if (!PyLong_CheckExact(s)) fail("slot_of's values must be ints");
        const long long slot = PyLong_AsLongLong(s);
        if (slot == -1 && PyErr_Occurred()) throw nb::python_error();
        if (slot < 0 || slot >= rows) fail("a slot lies outside the ring");
        // open streams have distinct slots: an id twice is a slot twice
        if (seen[static_cast<size_t>(slot)]) return nb::int_(static_cast<int>(IDS_DUPLICATE));
        seen[static_cast<size_t>(slot)] = 1;
        sv[static_cast<size_t>(i)] = slot;
    }
    if (f32) return pool_push_impl<float>(ring, n_arr, t_arr, chunks.ptr(), sv, ndarray_type.ptr(), C, L, head, s0, hop, tail_keep, check_finite);
    return pool_push_impl<double>(ring, n_arr, t_arr, chunks.ptr(), sv, ndarray_type.ptr(), C, L, head, s0, hop, tail_keep, check_finite);
}

// Rows of pool_due's / pool_gather's table (int64, (POOL_ROWS, streams)).
enum PoolRow : int { ROW_ID = 0, ROW_SLOT = 1, ROW_T0 = 2, ROW_TAKE = 3, ROW_OFF = 4, ROW_HEAD = 5, ROW_EM = 6, POOL_ROWS = 7 };

void check_table(const OutArray& table, int64_t m) {
    if (!is<int64_t>(table.dtype()) || table.ndim() != 2 || static_cast<int64_t>(table.shape(0)) != POOL_ROWS ||
        static_cast<int64_t>(table.shape(1)) < m || (table.shape(1) > 1 && table.stride(1) != 1) || table.stride(0) < static_cast<int64_t>(table.shape(1)) ||
        reinterpret_cast<std::uintptr_t>(table.data()) % alignof(int64_t))
        fail("table must be a C-contiguous (7, streams) int64 array");
}

// The step's frames: streams ids/slots (the open streams) from index r on, wrapping around (the
// rotation); stream i wants ready(n) - t frames (ready: complete frames of n samples), given while
// the step's total stays within max_frames (each stream's count capped by what is left).
// Writes the streams that get frames into table[:, :active] and returns (active, K, heads).
std::tuple<int64_t, int64_t, int64_t> pool_due(const InArray& ids, const InArray& slots, int64_t r, const InArray& n_arr, const InArray& t_arr,
                                               int64_t max_frames, int64_t L, int64_t s0, int64_t hop, int64_t ctx, int64_t head, OutArray table) {
    if (!is<int64_t>(ids.dtype()) || !is<int64_t>(slots.dtype()) || ids.ndim() != 1 || slots.ndim() != 1 || ids.shape(0) != slots.shape(0) ||
        (ids.shape(0) > 1 && (ids.stride(0) != 1 || slots.stride(0) != 1)))
        fail("ids and slots must be contiguous 1-D int64 arrays of one length");
    const int64_t m = static_cast<int64_t>(ids.shape(0));
    if (hop < 1 || L < 1 || max_frames < 0 || head < 0 || r < 0 || (m > 0 && r >= m)) fail("hop >= 1, L >= 1, max_frames >= 0, 0 <= r < streams required");
    check_table(table, m);
    const int64_t rows = std::min<int64_t>(static_cast<int64_t>(n_arr.shape(0)), static_cast<int64_t>(t_arr.shape(0)));
    check_counters(n_arr, rows, "n");
    check_counters(t_arr, rows, "t");
    const int64_t* id = static_cast<const int64_t*>(ids.data());
    const int64_t* sl = static_cast<const int64_t*>(slots.data());
    const int64_t* n = static_cast<const int64_t*>(n_arr.data());
    const int64_t* t = static_cast<const int64_t*>(t_arr.data());
    int64_t* tb = static_cast<int64_t*>(table.data());
    const int64_t ts = static_cast<int64_t>(table.stride(0));
    int64_t cum = 0, K = 0, active = 0, heads = 0;
    for (int64_t j = 0; j < m; ++j) {
        const int64_t i = (r + j) % m, s = sl[i];
        if (s < 0 || s >= rows) fail("a slot lies outside the pool's counters");
        const int64_t d = n[s] - L - s0;
        const int64_t ready = (n[s] < ctx || d < 0) ? 0 : d / hop + 1;
        const int64_t want = std::max<int64_t>(ready - t[s], 0);
        const int64_t take = std::min<int64_t>(want, std::max<int64_t>(0, max_frames - cum));
        cum += want;
        if (take <= 0) continue;
        const int64_t kh = t[s] < head ? std::min<int64_t>(take, head - t[s]) : 0;
        tb[ROW_ID * ts + active] = id[i];
        tb[ROW_SLOT * ts + active] = s;
        tb[ROW_T0 * ts + active] = t[s];
        tb[ROW_TAKE * ts + active] = take;
        tb[ROW_OFF * ts + active] = K;
        tb[ROW_HEAD * ts + active] = kh;
        tb[ROW_EM * ts + active] = 0;
        heads += kh > 0;
        K += take;
        ++active;
    }
    return {active, K, heads};
}

// The steady frames of table[:, :active] (from pool_due; frames t0 + head .. t0 + take - 1 of
// slot, frame u starting at ring column (s0 + u hop) mod C) through the plan's gather kernel into
// out rows off + head .. off + take - 1 (out (K, n_out), any non-negative strides: the step's
// (n_out, K) block transposed); then t[slot] += take, and with advance_em em[slot] += take (its
// old value kept in the table's ROW_EM: the stream's index of its first frame handed out).
void pool_gather(Plan& plan, const InArray& ring, OutArray table, int64_t active, OutArray out, OutArray t_arr, OutArray em_arr, bool advance_em,
                 int64_t C, int64_t hop, int64_t s0, int threads) {
    if (ring.ndim() != 2 || C < 1 || static_cast<int64_t>(ring.shape(1)) < C || hop < 1) fail("the ring must be (rows, C + L); C >= 1, hop >= 1");
    if (active < 0) fail("active >= 0 required");
    check_table(table, active);
    if (out.ndim() != 2) fail("out must be (K, n_out)");
    const int64_t rows = static_cast<int64_t>(ring.shape(0)), K = static_cast<int64_t>(out.shape(0));
    check_counters(t_arr, rows, "t");
    check_counters(em_arr, rows, "em");
    int64_t* tb = static_cast<int64_t*>(table.data());
    const int64_t ts = static_cast<int64_t>(table.stride(0));
    // runs of consecutive output rows (one without head frames; split where a stream's head
    // frames, computed by the caller, sit between)
    std::vector<int64_t> src_rows, src_offs;
    std::vector<std::pair<int64_t, int64_t>> runs;  // (first out row, first index in src_*)
    int64_t next = -1;
    for (int64_t a = 0; a < active; ++a) {
        const int64_t s = tb[ROW_SLOT * ts + a], t0 = tb[ROW_T0 * ts + a], take = tb[ROW_TAKE * ts + a], off = tb[ROW_OFF * ts + a],
                      kh = tb[ROW_HEAD * ts + a];
        if (s < 0 || s >= rows || take < 0 || kh < 0 || kh > take || off < 0 || off > K - take || t0 < 0) fail("a table entry lies outside the ring or out");
        if (kh == take) continue;
        if (off + kh != next) runs.emplace_back(off + kh, static_cast<int64_t>(src_rows.size()));
        for (int64_t u = t0 + kh; u < t0 + take; ++u) {
            const int64_t q = s0 + u * hop;
            src_rows.push_back(s);
            src_offs.push_back(((q % C) + C) % C);
        }
        next = off + take;
    }
    const size_t n_out = static_cast<size_t>(out.shape(1));
    const int64_t item = static_cast<int64_t>(out.dtype().bits / 8);
    for (size_t k = 0; k < runs.size(); ++k) {
        const int64_t first = runs[k].first, b = runs[k].second;
        const int64_t e = k + 1 < runs.size() ? runs[k + 1].second : static_cast<int64_t>(src_rows.size());
        const size_t len = static_cast<size_t>(e - b), one = len;
        const size_t shape[2] = {len, n_out};
        const int64_t strides[2] = {static_cast<int64_t>(out.stride(0)), static_cast<int64_t>(out.stride(1))};
        OutArray part(static_cast<char*>(out.data()) + first * strides[0] * item, 2, shape, nb::handle(), strides, out.dtype());
        InArray r_nd(src_rows.data() + b, 1, &one, nb::handle(), nullptr, nb::dtype<int64_t>());
        InArray o_nd(src_offs.data() + b, 1, &one, nb::handle(), nullptr, nb::dtype<int64_t>());
        if (first + static_cast<int64_t>(len) > K) fail("a run lies outside out");
        plan.impl->gather(ring, r_nd, o_nd, part, std::max(1, threads));  // (its checks again: dtypes, bounds)
    }
    int64_t* t = static_cast<int64_t*>(t_arr.data());
    int64_t* em = static_cast<int64_t*>(em_arr.data());
    for (int64_t a = 0; a < active; ++a) {
        const int64_t s = tb[ROW_SLOT * ts + a], take = tb[ROW_TAKE * ts + a];
        t[s] += take;
        if (advance_em) {
            tb[ROW_EM * ts + a] = em[s];
            em[s] += take;
        }
    }
}

// pool_due and, when no stream gets head frames, pool_gather in one crossing, into a new
// empty((1, n_out, K), dtype) (dtype: the plan's output dtype; frame k in column k). Returns
// (active, K, heads, out): out None when K == 0; with heads > 0 out is allocated but nothing is
// computed (the caller writes the head frames, then calls pool_gather with out[0].T).
nb::tuple pool_step(Plan& plan, const InArray& ring, const InArray& ids, const InArray& slots, int64_t r, OutArray n_arr, OutArray t_arr, OutArray em_arr,
                    OutArray table, int64_t max_frames, int64_t L, int64_t s0, int64_t hop, int64_t ctx, int64_t head, int64_t C, bool advance_em,
                    int threads, nb::handle empty_fn, nb::handle dtype_obj) {
    const InArray n_in(n_arr.data(), n_arr.ndim(), reinterpret_cast<const size_t*>(n_arr.shape_ptr()), nb::handle(), n_arr.stride_ptr(), n_arr.dtype());
    const InArray t_in(t_arr.data(), t_arr.ndim(), reinterpret_cast<const size_t*>(t_arr.shape_ptr()), nb::handle(), t_arr.stride_ptr(), t_arr.dtype());
    const auto [active, K, heads] = pool_due(ids, slots, r, n_in, t_in, max_frames, L, s0, hop, ctx, head, table);
    if (K == 0) return nb::make_tuple(active, K, heads, nb::none());
    const int64_t n_out = plan.impl->n_out;
    nb::object out = nb::borrow(empty_fn)(nb::make_tuple(1, n_out, K), nb::borrow(dtype_obj));
    if (heads == 0) {
        Py_buffer o;
        if (PyObject_GetBuffer(out.ptr(), &o, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) throw nb::python_error();
        struct ReleaseBuf {
            Py_buffer* b;
            ~ReleaseBuf() { PyBuffer_Release(b); }
        } release_o{&o};
        const bool w64 = plan.impl->w64;
        if (o.ndim != 3 || o.shape[0] != 1 || o.shape[1] != n_out || o.shape[2] != K || (w64 ? !native_format<double>(o.format) : !native_format<float>(o.format)))
            fail("empty(shape, dtype) must return a C-contiguous array of the plan's output dtype");
        const size_t shape[2] = {static_cast<size_t>(K), static_cast<size_t>(n_out)};
        const int64_t strides[2] = {1, K};  // out[0].T
        OutArray cols(o.buf, 2, shape, out, strides, w64 ? nb::dtype<double>() : nb::dtype<float>());
        pool_gather(plan, ring, table, active, cols, t_arr, em_arr, advance_em, C, hop, s0, threads);
    }
    return nb::make_tuple(active, K, heads, out);
}

void register_pool(nb::module_& m) {
    m.def("pool_push", &pool_push, nb::arg("ring"), nb::arg("n"), nb::arg("t"), nb::arg("chunks"), nb::arg("slots"), nb::arg("ndarray_type"), nb::arg("C"),
          nb::arg("L"), nb::arg("head"), nb::arg("s0"), nb::arg("hop"), nb::arg("tail_keep"), nb::arg("check_finite"),
          "StreamPool.push_many's chunks checked and written in one call: returns [(index, code, waiting)] of the chunks not taken "
          "(1 unknown slot, 2 not finite, 3 over the backlog, 4 not a 1-D contiguous array of the ring's dtype: push it in Python).");
    m.def("pool_push_ids", &pool_push_ids, nb::arg("ring"), nb::arg("n"), nb::arg("t"), nb::arg("chunks"), nb::arg("ids"), nb::arg("slot_of"),
          nb::arg("ndarray_type"), nb::arg("C"), nb::arg("L"), nb::arg("head"), nb::arg("s0"), nb::arg("hop"), nb::arg("tail_keep"), nb::arg("check_finite"),
          "pool_push with stream ids looked up in slot_of ({id: slot}): pool_push's list, or 1 (an id twice) or 2 (an id not an exact "
          "int or not open: check in Python), those two with nothing written.");
    m.def("pool_step", &pool_step, nb::arg("plan"), nb::arg("ring"), nb::arg("ids"), nb::arg("slots"), nb::arg("r"), nb::arg("n"), nb::arg("t"),
          nb::arg("em"), nb::arg("table"), nb::arg("max_frames"), nb::arg("L"), nb::arg("s0"), nb::arg("hop"), nb::arg("ctx"), nb::arg("head"),
          nb::arg("C"), nb::arg("advance_em"), nb::arg("threads"), nb::arg("empty"), nb::arg("dtype"),
          "pool_due, and pool_gather into a new empty((1, n_out, K), dtype) when no stream gets head frames: returns (active, K, heads, out).");
    m.def("pool_due", &pool_due, nb::arg("ids"), nb::arg("slots"), nb::arg("r"), nb::arg("n"), nb::arg("t"), nb::arg("max_frames"), nb::arg("L"),
          nb::arg("s0"), nb::arg("hop"), nb::arg("ctx"), nb::arg("head"), nb::arg("table"),
          "StreamPool.step's frames per stream, in rotation order: table rows (id, slot, t0, take, off, head, em) of the streams "
          "that get frames; returns (active, K, heads).");
    m.def("pool_gather", &pool_gather, nb::arg("plan"), nb::arg("ring"), nb::arg("table"), nb::arg("active"), nb::arg("out"), nb::arg("t"), nb::arg("em"),
          nb::arg("advance_em"), nb::arg("C"), nb::arg("hop"), nb::arg("s0"), nb::arg("threads") = 1,
          "StreamPool.step's steady frames (pool_due's table) gathered from the ring and computed into out (K, n_out); "
          "advances t (and em) by the frames taken.");
}

}  // namespace
