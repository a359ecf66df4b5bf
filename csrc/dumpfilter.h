// dumpfilter C core: pure functions over caller-owned buffers.
//
// Rules for everything declared here: no I/O, no allocation, no globals, no
// printing. Every multi-byte value read from a dump goes through the explicit
// loaders in byteorder.h. Every function that can fail returns a df_status;
// details go to out-parameters, which come last and end in _ret. Every
// buffer is passed with its length (bytes; elements for typed arrays: _cap,
// n<name>), checked on entry: a buffer shorter than the counts need is
// DF_ERR_INVALID, never a read or write past its end.
//
// csrc/dumpfilter_cdef.h is the cffi-parsable mirror of this header; the test
// suite compiles both together so they cannot drift apart.
#ifndef DUMPFILTER_H
#define DUMPFILTER_H

#include <stddef.h>
#include <stdint.h>

#define DF_BUILD_VERSION "0.1.0"

/** Status codes; mapped to Python exceptions in dumpfilter/_core.py only. */
typedef enum df_status {
	DF_OK = 0,
	DF_ERR_INVALID = 1,   // bad argument (size, alignment, layout)
	DF_ERR_CORRUPT = 2,   // input data is malformed (e.g. bad LZO stream)
	DF_ERR_OVERFLOW = 3,  // output buffer too small
} df_status;

/**
 * Why a page is left out of the dump (0 = kept). The order follows
 * makedumpfile's decision procedure; the same codes index the per-class
 * counters.
 */
enum df_page_class {
	DF_CLASS_KEEP = 0,
	DF_CLASS_ZERO = 1,          // content is all zero (dump level bit 1)
	DF_CLASS_CACHE = 2,         // page cache without PG_private (bit 2, or bit 4)
	DF_CLASS_CACHE_PRIVATE = 3, // page cache with PG_private (bit 4)
	DF_CLASS_USER = 4,          // anonymous or hugetlbfs (bit 8)
	DF_CLASS_FREE = 5,          // buddy free or unaccepted (bit 16)
	DF_CLASS_HWPOISON = 6,      // PG_hwpoison (always)
	DF_CLASS_OFFLINE = 7,       // logically offline (always)
	DF_NCLASSES = 8,
};

/** Dump level bits (makedumpfile -d). */
enum df_dump_level {
	DF_DL_EXCLUDE_ZERO = 1,
	DF_DL_EXCLUDE_CACHE = 2,
	DF_DL_EXCLUDE_CACHE_PRI = 4,
	DF_DL_EXCLUDE_USER_DATA = 8,
	DF_DL_EXCLUDE_FREE = 16,
	DF_DL_MAX = 31,
};

/** How the compound order / hugetlb marker of a folio is found in page[1]. */
enum df_compound_style {
	DF_COMPOUND_NONE = 0,        // compound pages are not examined
	DF_COMPOUND_FLAGS1 = 1,      // order = low byte of page[1].flags (>= 6.6)
	DF_COMPOUND_FIELDS_U8 = 2,   // u8 order/dtor at offsets in page[1] (4.16 .. 6.5)
	DF_COMPOUND_FIELDS_U16 = 3,  // u16 order/dtor at offsets in page[1] (4.4 .. 4.15)
};

/**
 * Kernel struct page layout and page-flag semantics, built once in Python
 * from VMCOREINFO (dumpfilter/layout.py). A field that the kernel does not
 * export is -1 (offsets, bit numbers) or has its have_* flag at 0.
 */
struct df_page_layout {
	uint32_t sizeof_page;       // SIZE(page), bytes
	uint8_t big_endian;         // byte order of the dumped kernel
	uint8_t compound_style;     // enum df_compound_style
	uint8_t _pad[2];
	int32_t off_flags;          // OFFSET(page.flags), unsigned long
	int32_t off_mapping;        // OFFSET(page.mapping), unsigned long
	int32_t off_mapcount;       // OFFSET(page._mapcount), int, or -1
	int32_t off_private;        // OFFSET(page.private), unsigned long, or -1
	int32_t off_compound_head;  // OFFSET(page.compound_head|compound_info), or -1
	int32_t off_compound_order; // byte offset inside page[1] (FIELDS styles), or -1
	int32_t off_compound_dtor;  // byte offset inside page[1] (FIELDS styles), or -1
	int32_t pg_lru;             // NUMBER(PG_*) bit numbers, -1 when absent
	int32_t pg_private;
	int32_t pg_swapcache;
	int32_t pg_swapbacked;
	int32_t pg_slab;
	int32_t pg_hwpoison;
	int32_t pg_buddy;           // pre-2.6.38 buddy flag
	int32_t pg_hugetlb;         // 6.6 .. 6.8: hugetlb flag in page[1].flags
	uint64_t pg_head_mask;      // NUMBER(PG_head_mask), 0 when absent
	int32_t buddy_mapcount;     // NUMBER(PAGE_*_MAPCOUNT_VALUE) as 32-bit ints
	int32_t slab_mapcount;
	int32_t hugetlb_mapcount;
	int32_t offline_mapcount;
	int32_t unaccepted_mapcount;
	uint8_t have_buddy_mapcount;
	uint8_t have_slab_mapcount;
	uint8_t have_hugetlb_mapcount;
	uint8_t have_offline_mapcount;
	uint8_t have_unaccepted_mapcount;
	uint8_t have_hugetlb_dtor;
	uint8_t _pad2[2];
	int64_t hugetlb_dtor;       // NUMBER(HUGETLB_PAGE_DTOR)
	int32_t nr_orders;          // LENGTH(zone.free_area), or -1
	int32_t _pad3;
};

/** Multi-page exclusion that runs past the end of a batch. */
struct df_classify_carry {
	uint64_t end_pfn;  // exclusive; <= next batch's first pfn means nothing pending
	uint8_t class_id;  // enum df_page_class of the pending run
	uint8_t _pad[7];
};

/**
 * Classify a batch of struct pages the way makedumpfile does.
 *
 * @param pages      npages + nextra consecutive struct pages (sizeof_page
 *                   bytes each) for pfns first_pfn .. first_pfn+npages-1;
 *                   the nextra (0 or 1) trailing entries are only read as
 *                   page[1] of a compound head.
 * @param exists     LSB-first bitmap, bit i = pfn first_pfn+i is RAM in the
 *                   source (pfns without a bit are skipped entirely).
 * @param dump_level makedumpfile -d value (0..31).
 * @param bitmap2    LSB-first bitmap of npages bits, bit i = pfn first_pfn+i
 *                   dumpable; bits of excluded pages are cleared.
 * @param counts     DF_NCLASSES counters; counts[c] grows by the number of
 *                   bitmap2 bits that class c cleared.
 * @param class_ret  optional (may be NULL): npages bytes, reason per pfn.
 * @param carry      in/out pending multi-page exclusion across batches;
 *                   zero-initialise before the first batch.
 */
df_status df_classify_pages(const uint8_t *pages, size_t pages_len, size_t npages,
			    size_t nextra, uint64_t first_pfn,
			    const uint8_t *exists, size_t exists_len,
			    uint32_t dump_level,
			    const struct df_page_layout *layout,
			    uint8_t *bitmap2, size_t bitmap2_len,
			    uint64_t *counts, size_t ncounts,
			    uint8_t *class_ret, size_t class_len,
			    struct df_classify_carry *carry);

/**
 * Mark all-zero pages.
 *
 * @param data      npages * page_size bytes of page contents.
 * @param mask      optional LSB-first bitmap of npages bits: only pages with
 *                  a set bit are tested (others get 0); NULL tests all.
 * @param zero_ret  LSB-first bitmap of npages bits, written (not OR-ed):
 *                  bit i set = page i is entirely zero.
 * @param count_ret number of zero pages found.
 */
df_status df_find_zero_pages(const uint8_t *data, size_t data_len, size_t npages,
			     uint32_t page_size, const uint8_t *mask, size_t mask_len,
			     uint8_t *zero_ret, size_t zero_len, uint64_t *count_ret);

/** Number of set bits among the first nbits bits of an LSB-first bitmap. */
df_status df_bitmap_count(const uint8_t *bitmap, size_t bitmap_len, uint64_t nbits,
			  uint64_t *count_ret);

/**
 * Set bits [start, end) of an LSB-first bitmap (used to build the 1st
 * bitmap from physical ranges).
 */
df_status df_bitmap_set_range(uint8_t *bitmap, size_t bitmap_len, uint64_t start,
			      uint64_t end);

// ---------------------------------------------------------------------
// LZO1X-1 (raw blocks, the format liblzo2's lzo1x_1_compress writes and
// lzo1x_decompress_safe reads). Our own implementation from the format
// description.

enum {
	DF_LZO1X_1_WORKMEM_SIZE = 16384 * 2,  // bytes of scratch for compression
};

/** Worst-case compressed size for src_len input bytes. */
size_t df_lzo1x_worst_size(size_t src_len);

/**
 * Compress src into dst. wrkmem is DF_LZO1X_1_WORKMEM_SIZE bytes of caller
 * scratch (contents on entry do not matter). DF_ERR_OVERFLOW if dst_cap is
 * too small.
 */
df_status df_lzo1x_1_compress(const uint8_t *src, size_t src_len,
			      uint8_t *dst, size_t dst_cap, void *wrkmem,
			      size_t wrkmem_len, size_t *dst_len_ret);

/**
 * Decompress a raw LZO1X block, never reading or writing out of bounds.
 * DF_ERR_CORRUPT on malformed input, DF_ERR_OVERFLOW if the output does not
 * fit in dst_cap.
 */
df_status df_lzo1x_decompress_safe(const uint8_t *src, size_t src_len,
				   uint8_t *dst, size_t dst_cap,
				   size_t *dst_len_ret);

// ---------------------------------------------------------------------
// Batches of page contents (csrc/pages.c).

/**
 * Indices (0-based, ascending) of the pages to store with their own data:
 * bit set in mask and, when zero is not NULL, clear in zero.
 */
df_status df_select_pages(const uint8_t *mask, size_t mask_len,
			  const uint8_t *zero, size_t zero_len, size_t npages,
			  uint32_t *idx_ret, size_t idx_cap, size_t *count_ret);

/** Copy pages idx[0..count) of src, page_size bytes each, to out, packed. */
df_status df_gather_pages(const uint8_t *src, size_t src_len, uint32_t page_size,
			  const uint32_t *idx, size_t idx_len, size_t count,
			  uint8_t *out, size_t out_len);

/**
 * LZO1X-1 npages pages of src into dst, one after the other: page k is
 * src + idx[k] * page_size (src + k * page_size when idx is NULL). A page
 * that does not shrink is copied raw; sizes_ret[k] == page_size marks it.
 * dst_cap must allow npages * page_size bytes.
 */
df_status df_lzo1x_1_compress_pages(const uint8_t *src, size_t src_len,
				    uint32_t page_size,
				    const uint32_t *idx, size_t idx_len, size_t npages,
				    uint8_t *dst, size_t dst_cap,
				    void *wrkmem, size_t wrkmem_len,
				    uint32_t *sizes_ret, size_t sizes_cap,
				    size_t *dst_len_ret);

/**
 * Page descriptors (24 bytes each, little endian) for the set bits of mask
 * in pfn order: pages with a zero bit point at zero_offset; the others take
 * the next entry of sizes (stored bytes; == page_size means raw) and get
 * consecutive offsets from data_offset, except those whose ref_offsets
 * entry (when ref_offsets is not NULL) is >= 0: they point at identical
 * data stored earlier (dedup). Writes count_ret descriptors to out and the
 * offset after the last data block to data_end_ret.
 */
df_status df_pack_descriptors(const uint8_t *mask, size_t mask_len,
			      const uint8_t *zero, size_t zero_len, size_t npages,
			      const uint32_t *sizes, size_t nsizes,
			      const int64_t *ref_offsets, size_t nref,
			      uint32_t page_size, uint32_t codec_flag,
			      int64_t data_offset, int64_t zero_offset,
			      uint8_t *out, size_t out_len,
			      size_t *count_ret, int64_t *data_end_ret);

// ---------------------------------------------------------------------
// Compression through a library's own entry points, called per page from C
// (the caller looks the functions up; this code stays pure).

enum df_page_compressor_kind {
	DF_PC_ZLIB = 1,  // fn_compress = zlib compress2()
	DF_PC_ZSTD = 2,  // fn_compress = ZSTD_compressCCtx(), fn_is_error = ZSTD_isError()
	DF_PC_LIBDEFLATE = 3,  // fn_compress = libdeflate_zlib_compress(), ctx = its compressor
};

struct df_page_compressor {
	int32_t kind;        // enum df_page_compressor_kind
	int32_t level;       // compression level passed to the library
	void *fn_compress;
	void *fn_is_error;
	void *ctx;           // ZSTD_CCtx * or libdeflate compressor (one per thread); unused for zlib
};

/**
 * Compress npages pages (page k at src + idx[k] * page_size, or
 * src + k * page_size when idx is NULL) into dst one after the other with
 * the library functions in c. A page that does not shrink is copied raw;
 * sizes_ret[k] == page_size marks it.
 */
df_status df_compress_pages_fn(const struct df_page_compressor *c,
			       const uint8_t *src, size_t src_len, uint32_t page_size,
			       const uint32_t *idx, size_t idx_len, size_t npages,
			       uint8_t *dst, size_t dst_cap,
			       uint32_t *sizes_ret, size_t sizes_cap,
			       size_t *dst_len_ret);

#endif // DUMPFILTER_H
