// LZO1X-1 raw blocks: a greedy hash-table compressor and a bounds-checked
// decompressor, written for dumpfilter from the description of the LZO1X
// bitstream (the format makedumpfile -l stores, one block per page).
//
// Bitstream summary (what both functions below agree on). A block is a
// sequence of instructions; each match instruction carries, in its two low
// "S" bits, the number (0..3) of literal bytes that follow it directly. The
// meaning of an instruction byte below 16 depends on what came before it:
//
//   state 0 (start, or after a match with S == 0):
//     0000LLLL            literal run of 3 + L bytes; L == 0 means
//                         18 + extension (see below). Then state 4.
//   state 1..3 (after a match with S = 1..3):
//     0000DDSS HHHHHHHH   2-byte match, distance (H << 2) + D + 1
//   state 4 (after a literal run of 4 or more):
//     0000DDSS HHHHHHHH   3-byte match, distance (H << 2) + D + 2049
//
// and in every state:
//   1LLDDDSS HHHHHHHH     match of 5 + L bytes, distance (H << 3) + D + 1
//   01LDDDSS HHHHHHHH     match of 3 + L bytes, same distance encoding
//   001LLLLL DDDDDDSS DDDDDDDD
//                         match of 2 + L bytes (L == 0: 33 + extension),
//                         distance = 14-bit D (little-endian, above S) + 1
//   0001HLLL DDDDDDSS DDDDDDDD
//                         match of 2 + L bytes (L == 0: 9 + extension),
//                         distance 16384 + (H << 14) + D; H == 0 and D == 0
//                         is the end of the block.
//
// A length "extension" is a run of zero bytes, each worth 255, ended by one
// non-zero byte that is added. The first byte of a block is special when it
// is above 17: it starts a literal run of (byte - 17) bytes, after which the
// state is that count (1..3) or 4.
#include <string.h>

#include "dumpfilter.h"

#define DF_LZO_HASH_BITS 14
#define DF_LZO_HASH_SIZE (1u << DF_LZO_HASH_BITS)
#define DF_LZO_MIN_HASH_BITS 8

// Longest distances each match form can express.
#define DF_LZO_SHORT_MAX_DIST 2048u   // 01/1x forms
#define DF_LZO_SHORT_MAX_LEN 8u
#define DF_LZO_MID_MAX_DIST 16384u    // 001 form
#define DF_LZO_FAR_MAX_DIST 49151u    // 0001 form

// The compressor does not look for matches starting in the last bytes of the
// input; they go out as literals (short inputs are all literals).
#define DF_LZO_TAIL 20u

// Literal runs that open a block are coded in the first byte up to this size.
#define DF_LZO_FIRST_RUN_MAX 238u

// Compile-time check: the caller's scratch holds the hash table.
typedef char df_lzo_workmem_fits[DF_LZO1X_1_WORKMEM_SIZE >=
				 DF_LZO_HASH_SIZE * sizeof(uint16_t) ? 1 : -1];

size_t df_lzo1x_worst_size(size_t src_len)
{
	// Incompressible input costs at most one header byte plus one byte per
	// 255 literals, and the 3-byte end marker; this bound is generous.
	return src_len + src_len / 16 + 64 + 3;
}

static inline uint32_t df_lzo_load32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint32_t df_lzo_hash(uint32_t v, unsigned int shift)
{
	// Fibonacci hashing of the next four bytes.
	return (v * 2654435761u) >> shift;
}

// Number of bytes an extended length of value n (n >= 1) takes: one per
// full 255 that still leaves a non-zero remainder, plus the final byte.
static inline size_t df_lzo_ext_size(size_t n)
{
	return (n - 1) / 255 + 1;
}

static inline uint8_t *df_lzo_put_ext(uint8_t *op, size_t n)
{
	while (n > 255) {
		*op++ = 0;
		n -= 255;
	}
	*op++ = (uint8_t)n;
	return op;
}

static inline int df_lzo_little_endian(void)
{
	const uint16_t one = 1;
	uint8_t b;

	memcpy(&b, &one, 1);
	return b == 1;
}

// Length of the match between cand and ip (cand < ip), which agree on their
// first four bytes; it may run up to end. Compares a word at a time (memcpy
// loads, no alignment assumption) and finishes bytewise.
static inline size_t df_lzo_match_len(const uint8_t *cand, const uint8_t *ip,
				      const uint8_t *end)
{
	size_t len = 4;
	size_t left = (size_t)(end - ip);

	while (left - len >= sizeof(uint64_t)) {
		uint64_t a, b;

		memcpy(&a, cand + len, sizeof(a));
		memcpy(&b, ip + len, sizeof(b));
		if (a != b) {
			// The first differing byte: the lowest set bit of the
			// difference, as the loads are little endian.
			uint64_t x = a ^ b;

			if (!df_lzo_little_endian())
				break;
			return len + (size_t)(__builtin_ctzll(x) >> 3);
		}
		len += sizeof(uint64_t);
	}
	while (len < left && cand[len] == ip[len])
		len++;
	return len;
}

// Output cursor of the compressor.
struct df_lzo_out {
	uint8_t *start;
	uint8_t *p;
	uint8_t *end;
};

static inline int df_lzo_room(const struct df_lzo_out *out, size_t n)
{
	return (size_t)(out->end - out->p) >= n;
}

// Emit a literal run of n >= 1 bytes from lit. After a match, runs of 1..3
// go into the match's S bits, which sit in the byte two before the cursor
// for every match form we emit.
static int df_lzo_put_literals(struct df_lzo_out *out, const uint8_t *lit,
			       size_t n)
{
	size_t hdr;

	if (out->p == out->start && n <= DF_LZO_FIRST_RUN_MAX)
		hdr = 1;
	else if (n <= 3)
		hdr = 0;
	else if (n <= 18)
		hdr = 1;
	else
		hdr = 1 + df_lzo_ext_size(n - 18);
	if (!df_lzo_room(out, hdr + n))
		return 0;

	if (out->p == out->start && n <= DF_LZO_FIRST_RUN_MAX) {
		*out->p++ = (uint8_t)(17 + n);
	} else if (n <= 3) {
		out->p[-2] |= (uint8_t)n;
	} else if (n <= 18) {
		*out->p++ = (uint8_t)(n - 3);
	} else {
		*out->p++ = 0;
		out->p = df_lzo_put_ext(out->p, n - 18);
	}
	memcpy(out->p, lit, n);
	out->p += n;
	return 1;
}

// Emit a match of len >= 4 bytes at distance dist (1..DF_LZO_FAR_MAX_DIST),
// with the S bits left 0.
static int df_lzo_put_match(struct df_lzo_out *out, size_t len, size_t dist)
{
	uint8_t *op = out->p;

	if (len <= DF_LZO_SHORT_MAX_LEN && dist <= DF_LZO_SHORT_MAX_DIST) {
		if (!df_lzo_room(out, 2))
			return 0;
		dist -= 1;
		*op++ = (uint8_t)((len - 1) << 5 | (dist & 7) << 2);
		*op++ = (uint8_t)(dist >> 3);
	} else {
		size_t short_max, d;
		uint8_t code;

		if (dist <= DF_LZO_MID_MAX_DIST) {
			short_max = 33;
			d = dist - 1;
			code = 32;
		} else {
			short_max = 9;
			d = dist - DF_LZO_MID_MAX_DIST;
			code = (uint8_t)(16 | (d >> 11 & 8));
			d &= 0x3fff;
		}
		if (!df_lzo_room(out, 3 + (len > short_max ?
					   df_lzo_ext_size(len - short_max) : 0)))
			return 0;
		if (len <= short_max) {
			*op++ = (uint8_t)(code | (len - 2));
		} else {
			*op++ = code;
			op = df_lzo_put_ext(op, len - short_max);
		}
		*op++ = (uint8_t)(d << 2);
		*op++ = (uint8_t)(d >> 6);
	}
	out->p = op;
	return 1;
}

df_status df_lzo1x_1_compress(const uint8_t *src, size_t src_len,
			      uint8_t *dst, size_t dst_cap, void *wrkmem,
			      size_t wrkmem_len, size_t *dst_len_ret)
{
	// The table keeps the low 16 bits of the last position that hashed to
	// each slot. A candidate rebuilt from them is some earlier position at
	// most 65535 back; it is only used after its bytes and its distance are
	// checked, so stale or colliding slots cost a miss, never a wrong match.
	uint16_t *table = wrkmem;
	struct df_lzo_out out = { dst, dst, dst + dst_cap };
	const uint8_t *ip, *lit, *limit;
	const uint8_t *const end = src + src_len;
	unsigned int shift;

	*dst_len_ret = 0;
	if ((!src && src_len) || !dst || !wrkmem || wrkmem_len < DF_LZO1X_1_WORKMEM_SIZE)
		return DF_ERR_INVALID;

	lit = src;
	if (src_len > DF_LZO_TAIL) {
		// Small inputs use a smaller table: less to clear, and with a
		// slot per input position little is lost to collisions.
		unsigned int bits = DF_LZO_MIN_HASH_BITS;

		while (bits < DF_LZO_HASH_BITS && ((size_t)1 << bits) < src_len)
			bits++;
		shift = 32 - bits;
		memset(table, 0, ((size_t)1 << bits) * sizeof(uint16_t));
		limit = end - DF_LZO_TAIL;
		ip = src;
		table[df_lzo_hash(df_lzo_load32le(ip), shift)] = 0;
		ip++;
		// Inputs no longer than the farthest distance a match can code
		// (pages): every slot holds an earlier position of this input
		// (the table starts at 0, position 0), so a candidate needs only
		// its bytes checked. Same decisions as the general loop below.
		while (src_len <= DF_LZO_FAR_MAX_DIST && ip < limit) {
			uint32_t v = df_lzo_load32le(ip);
			uint32_t h = df_lzo_hash(v, shift);
			const uint8_t *cand = src + table[h];
			size_t len;

			table[h] = (uint16_t)(ip - src);
			if (df_lzo_load32le(cand) != v) {
				ip += 1 + ((size_t)(ip - lit) >> 5);
				continue;
			}
			len = df_lzo_match_len(cand, ip, end);
			if (ip > lit && !df_lzo_put_literals(&out, lit,
							     (size_t)(ip - lit)))
				return DF_ERR_OVERFLOW;
			if (!df_lzo_put_match(&out, len, (size_t)(ip - cand)))
				return DF_ERR_OVERFLOW;
			ip += len;
			lit = ip;
		}
		while (ip < limit) {
			uint32_t v = df_lzo_load32le(ip);
			uint32_t h = df_lzo_hash(v, shift);
			size_t pos = (size_t)(ip - src);
			size_t back = (uint16_t)(pos - table[h]);
			const uint8_t *cand;
			size_t len;

			table[h] = (uint16_t)pos;
			if (back == 0 || back > DF_LZO_FAR_MAX_DIST ||
			    back > pos ||
			    df_lzo_load32le(ip - back) != v) {
				// Skip faster through data that keeps missing.
				ip += 1 + ((size_t)(ip - lit) >> 5);
				continue;
			}
			cand = ip - back;
			len = df_lzo_match_len(cand, ip, end);
			if (ip > lit && !df_lzo_put_literals(&out, lit,
							     (size_t)(ip - lit)))
				return DF_ERR_OVERFLOW;
			if (!df_lzo_put_match(&out, len, back))
				return DF_ERR_OVERFLOW;
			ip += len;
			lit = ip;
		}
	}
	if (end > lit && !df_lzo_put_literals(&out, lit, (size_t)(end - lit)))
		return DF_ERR_OVERFLOW;
	// End of block: the far form with H == 0, D == 0.
	if (!df_lzo_room(&out, 3))
		return DF_ERR_OVERFLOW;
	*out.p++ = 16 | 1;
	*out.p++ = 0;
	*out.p++ = 0;
	*dst_len_ret = (size_t)(out.p - dst);
	return DF_OK;
}

// Read an extended length starting at src[*ip]: zero bytes worth 255 each,
// then a non-zero byte added. base is added on top. The length is not
// checked against the output room here: the end marker carries a length
// field that is never used, whatever its value.
static df_status df_lzo_get_ext(const uint8_t *src, size_t src_len,
				size_t *ip, size_t base, size_t *len_ret)
{
	size_t i = *ip, n = base;

	for (;;) {
		if (i >= src_len)
			return DF_ERR_CORRUPT;
		if (src[i] != 0)
			break;
		n += 255;
		i++;
		// Far beyond any real block; stops the sum from wrapping
		// where size_t is 32 bits.
		if (n > SIZE_MAX / 2)
			return DF_ERR_CORRUPT;
	}
	n += src[i++];
	*ip = i;
	*len_ret = n;
	return DF_OK;
}

df_status df_lzo1x_decompress_safe(const uint8_t *src, size_t src_len,
				   uint8_t *dst, size_t dst_cap,
				   size_t *dst_len_ret)
{
	size_t ip = 0, op = 0;
	unsigned int state = 0;  // literals copied by the last instruction
	df_status err;

	*dst_len_ret = 0;
	if ((!src && src_len) || (!dst && dst_cap))
		return DF_ERR_INVALID;
	if (src_len == 0)
		return DF_ERR_CORRUPT;

	if (src[0] > 17) {
		size_t n = (size_t)src[0] - 17;

		ip = 1;
		if (n > dst_cap)
			return DF_ERR_OVERFLOW;
		if (n > src_len - ip)
			return DF_ERR_CORRUPT;
		memcpy(dst, src + ip, n);
		ip += n;
		op = n;
		state = n < 4 ? (unsigned int)n : 4;
	}

	for (;;) {
		unsigned int inst, next;
		size_t len, dist;

		if (ip >= src_len)
			return DF_ERR_CORRUPT;
		inst = src[ip++];

		if (inst < 16 && state == 0) {
			// Literal run of 4 or more.
			if (inst != 0) {
				len = inst;
			} else {
				err = df_lzo_get_ext(src, src_len, &ip, 15,
						     &len);
				if (err)
					return err;
			}
			len += 3;
			if (len > dst_cap - op)
				return DF_ERR_OVERFLOW;
			if (len > src_len - ip)
				return DF_ERR_CORRUPT;
			memcpy(dst + op, src + ip, len);
			ip += len;
			op += len;
			state = 4;
			continue;
		}

		if (inst < 16) {
			if (ip >= src_len)
				return DF_ERR_CORRUPT;
			dist = (inst >> 2) + ((size_t)src[ip++] << 2) + 1;
			len = 2;
			if (state == 4) {
				dist += 2048;
				len = 3;
			}
			next = inst & 3;
		} else if (inst >= 64) {
			if (ip >= src_len)
				return DF_ERR_CORRUPT;
			len = (inst >> 5) + 1;
			dist = ((inst >> 2) & 7) + ((size_t)src[ip++] << 3) + 1;
			next = inst & 3;
		} else {
			unsigned int w;
			size_t lbits = inst >= 32 ? 31 : 7;

			len = inst & lbits;
			if (len == 0) {
				err = df_lzo_get_ext(src, src_len, &ip, lbits,
						     &len);
				if (err)
					return err;
			}
			len += 2;
			if (src_len - ip < 2)
				return DF_ERR_CORRUPT;
			w = (unsigned int)src[ip] | (unsigned int)src[ip + 1] << 8;
			ip += 2;
			next = w & 3;
			if (inst >= 32) {
				dist = (w >> 2) + 1;
			} else {
				dist = ((size_t)(inst & 8) << 11) + (w >> 2);
				if (dist == 0) {
					// End of block: it must be the last thing.
					if (ip != src_len)
						return DF_ERR_CORRUPT;
					*dst_len_ret = op;
					return DF_OK;
				}
				dist += 16384;
			}
		}

		if (dist > op)
			return DF_ERR_CORRUPT;
		if (len > dst_cap - op)
			return DF_ERR_OVERFLOW;
		if (dist >= len) {
			memcpy(dst + op, dst + op - dist, len);
			op += len;
		} else {
			// Overlapping copy repeats the last dist bytes. Whenever
			// done is a multiple of dist, the done + dist bytes from
			// `from` on are whole periods already in place, so they
			// can be copied at once: the chunk doubles each time.
			const uint8_t *from = dst + op - dist;
			uint8_t *to = dst + op;
			size_t done = 0;

			while (done < len) {
				size_t c = done + dist;

				if (c > len - done)
					c = len - done;
				memcpy(to + done, from, c);
				done += c;
			}
			op += len;
		}

		// Up to three literals ride on the match.
		if (next) {
			if (next > dst_cap - op)
				return DF_ERR_OVERFLOW;
			if (next > src_len - ip)
				return DF_ERR_CORRUPT;
			memcpy(dst + op, src + ip, next);
			ip += next;
			op += next;
		}
		state = next;
	}
}
