// Layouts for the tiled prefill GEMM (gemm_impl.inc). A thread unpacks
// kPanelRows weight rows into a panel, once for all activation rows, and runs a
// register tile over it.
//
// The panel is vertical: one 64-byte vector holds 4 consecutive elements of 16
// weight rows (lane r = row r), so a single vpdpbusd against 4 activation bytes
// broadcast to every lane advances 16 output sums at once, each in its own
// lane. There are no horizontal reductions, and every scale is applied per
// vector of 16 rows rather than per row. Levels are unsigned bytes L, so each
// element is x = scale * L - offset:
//
//   Block32 (q4_0, q4_1, q5_0, q5_1, q8_0), per 32-element block and 16 rows:
//     L    8 vectors (elements 4s .. 4s+3 in vector s)
//     d    16 floats: x = d * L + m
//     m    16 floats (q4_1/q5_1: the min; the others: -offset * d)
//   Super256 (q4_k, q5_k, q6_k), per 256-element super-block and 16 rows, with
//   sub-blocks of S elements (32 for q4_k/q5_k, 16 for q6_k):
//     L    64 vectors
//     sc   256 / S vectors of sub-block scales, int32 or int16 pairs (PanelScales)
//     m    8 vectors, one per 32-element block p (the activations' block):
//            q4_k/q5_k: 16 floats dmin * min_p, subtracted times the
//                       activation block's d * (sum of levels)
//            q6_k:      int16 pairs -32 * sc of 16-element groups 2p and 2p + 1,
//                       added to the block's integer sum times its level sums
//     d    16 floats: x = d * sc * L - dmin * min (q6_k: d * sc * (L - 32))
//
// A panel is kPanelGroups groups of 16 rows, each group's blocks in order.
// Activations come in the flat format (act_formats.h), whose levels are read
// 4 bytes at a time and broadcast.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace quanta::cpu {

constexpr int kPanelLanes = 16;
constexpr int kPanelGroups = 2;
constexpr int kPanelRows = kPanelLanes * kPanelGroups;

enum class PanelKind { Block32, Super256 };
// How a Super256 panel holds its sub-block scales, as the level's tile reads them (Kernels::panel_scales):
// Int32 for the tiles that multiply int32 sums by them; Int16Pairs, the scale in both int16 halves of its
// lane, for avx2's, whose vpmaddwd widens int16 pair sums and applies the scale in one step (a plain load
// instead of load, shift and blend: tiles of 32 x 4 x 1024 on a Sapphire Rapids-class Xeon, one thread, best
// of 3 alternating runs, q4_k 114.4 -> 117.6 GMAC/s, q6_k 81.3 -> 83.7).
enum class PanelScales { Int32, Int16Pairs };

constexpr PanelKind panel_kind(DType weight) {
    const bool k_quant = weight == DType::Q4_K || weight == DType::Q5_K || weight == DType::Q6_K;
    return k_quant ? PanelKind::Super256 : PanelKind::Block32;
}
inline int panel_block(DType weight) { return panel_kind(weight) == PanelKind::Super256 ? 256 : 32; }
// Elements per integer sub-block scale (Super256).
inline int panel_sub_block(DType weight) { return weight == DType::Q6_K ? 16 : 32; }

// Byte offsets inside one block of a 16-row group.
constexpr size_t kB32Scale = 512, kB32Min = 576, kB32Bytes = 640;
constexpr size_t kS256Scales = 4096;
constexpr size_t s256_mins(int sub) { return kS256Scales + (size_t)(256 / sub) * 64; }
constexpr size_t s256_d(int sub) { return s256_mins(sub) + 512; }
constexpr size_t s256_bytes(int sub) { return s256_d(sub) + 64; }

inline size_t panel_block_bytes(DType weight) {
    return panel_kind(weight) == PanelKind::Super256 ? s256_bytes(panel_sub_block(weight)) : kB32Bytes;
}
// Bytes of one 16-row group for rows of k elements, and of a whole panel.
inline size_t panel_group_bytes(DType weight, int64_t k) {
    return (size_t)(k / panel_block(weight)) * panel_block_bytes(weight);
}
inline size_t panel_bytes(DType weight, int64_t k) { return kPanelGroups * panel_group_bytes(weight, k); }

// Unpacks weight rows rows[0..n) (n <= kPanelRows; k elements each) into a
// panel with its scales as `scales`; rows past n are zero.
void unpack_panel(DType type, const void* const* rows, int n, int64_t k, PanelScales scales, uint8_t* panel);
// The same from n rows of octets (octets.h) starting at the octet at `octets`.
void unpack_panel_octets(DType type, const uint8_t* octets, int n, int64_t k, PanelScales scales, uint8_t* panel);
}  // namespace quanta::cpu
