// Batch work on windows of page contents: which pages to store, gathering
// them, LZO-compressing a whole batch, and packing page descriptors.
#include <string.h>

#include "byteorder.h"
#include "checks.h"
#include "dumpfilter.h"

static inline int df_test(const uint8_t *bitmap, size_t i)
{
	return bitmap && ((bitmap[i >> 3] >> (i & 7)) & 1);
}

// A batch of npages pages (page k at src + idx[k] * page_size, or
// k * page_size without idx) inside src_len bytes, with room for its sizes.
static df_status df_check_page_batch(size_t src_len, uint32_t page_size, const uint32_t *idx,
				     size_t idx_len, size_t npages, size_t sizes_cap)
{
	if (page_size == 0 || sizes_cap < npages)
		return DF_ERR_INVALID;
	if (!idx)
		return df_fits(npages, page_size, src_len) ? DF_OK : DF_ERR_INVALID;
	if (idx_len < npages)
		return DF_ERR_INVALID;
	for (size_t k = 0; k < npages; k++)
		if (!df_fits((size_t)idx[k] + 1, page_size, src_len))
			return DF_ERR_INVALID;
	return DF_OK;
}

df_status df_select_pages(const uint8_t *mask, size_t mask_len,
			  const uint8_t *zero, size_t zero_len, size_t npages,
			  uint32_t *idx_ret, size_t idx_cap, size_t *count_ret)
{
	size_t n = 0;

	if (npages > UINT32_MAX || mask_len < df_bitmap_bytes(npages) ||
	    (zero && zero_len < df_bitmap_bytes(npages)) || idx_cap < npages)
		return DF_ERR_INVALID;
	for (size_t i = 0; i < npages; i++)
		if (df_test(mask, i) && !df_test(zero, i))
			idx_ret[n++] = (uint32_t)i;
	*count_ret = n;
	return DF_OK;
}

df_status df_gather_pages(const uint8_t *src, size_t src_len, uint32_t page_size,
			  const uint32_t *idx, size_t idx_len, size_t count,
			  uint8_t *out, size_t out_len)
{
	if (idx_len < count || !df_fits(count, page_size, out_len))
		return DF_ERR_INVALID;
	for (size_t k = 0; k < count; k++)
		if (!df_fits((size_t)idx[k] + 1, page_size, src_len))
			return DF_ERR_INVALID;
	for (size_t k = 0; k < count; k++)
		memcpy(out + k * (size_t)page_size, src + (size_t)idx[k] * page_size, page_size);
	return DF_OK;
}

df_status df_lzo1x_1_compress_pages(const uint8_t *src, size_t src_len,
				    uint32_t page_size,
				    const uint32_t *idx, size_t idx_len, size_t npages,
				    uint8_t *dst, size_t dst_cap,
				    void *wrkmem, size_t wrkmem_len,
				    uint32_t *sizes_ret, size_t sizes_cap,
				    size_t *dst_len_ret)
{
	size_t pos = 0;

	if (wrkmem_len < DF_LZO1X_1_WORKMEM_SIZE)
		return DF_ERR_INVALID;
	if (df_check_page_batch(src_len, page_size, idx, idx_len, npages, sizes_cap) != DF_OK)
		return DF_ERR_INVALID;
	for (size_t k = 0; k < npages; k++) {
		const uint8_t *page = src + (size_t)(idx ? idx[k] : k) * page_size;
		size_t len = 0;
		df_status st;

		if (dst_cap - pos < page_size)
			return DF_ERR_OVERFLOW;
		// Compressed data that is not smaller than the page is useless:
		// a page_size output buffer makes the compressor give up early.
		st = df_lzo1x_1_compress(page, page_size, dst + pos, page_size, wrkmem,
					 wrkmem_len, &len);
		if (st == DF_OK && len < page_size) {
			sizes_ret[k] = (uint32_t)len;
			pos += len;
		} else if (st == DF_OK || st == DF_ERR_OVERFLOW) {
			memcpy(dst + pos, page, page_size);  // stored raw
			sizes_ret[k] = page_size;
			pos += page_size;
		} else {
			return st;
		}
	}
	*dst_len_ret = pos;
	return DF_OK;
}

df_status df_pack_descriptors(const uint8_t *mask, size_t mask_len,
			      const uint8_t *zero, size_t zero_len, size_t npages,
			      const uint32_t *sizes, size_t nsizes,
			      const int64_t *ref_offsets, size_t nref,
			      uint32_t page_size, uint32_t codec_flag,
			      int64_t data_offset, int64_t zero_offset,
			      uint8_t *out, size_t out_len,
			      size_t *count_ret, int64_t *data_end_ret)
{
	size_t n = 0, k = 0;

	if (mask_len < df_bitmap_bytes(npages) || (zero && zero_len < df_bitmap_bytes(npages)) ||
	    !df_fits(npages, 24, out_len))
		return DF_ERR_INVALID;
	for (size_t i = 0; i < npages; i++) {
		uint8_t *d;
		int64_t off;
		uint32_t size, flags;

		if (!df_test(mask, i))
			continue;
		if (df_test(zero, i)) {
			off = zero_offset;
			size = page_size;
			flags = 0;
		} else {
			if (k >= nsizes || (ref_offsets && k >= nref))
				return DF_ERR_INVALID;
			size = sizes[k];
			if (size == 0 || size > page_size)
				return DF_ERR_INVALID;
			flags = size < page_size ? codec_flag : 0;
			if (ref_offsets && ref_offsets[k] >= 0) {
				off = ref_offsets[k];  // same data stored earlier
			} else {
				off = data_offset;
				data_offset += size;
			}
			k++;
		}
		d = out + n * 24;
		df_store64le(d, (uint64_t)off);
		df_store32le(d + 8, size);
		df_store32le(d + 12, flags);
		df_store64le(d + 16, 0);
		n++;
	}
	*count_ret = n;
	*data_end_ret = data_offset;
	return DF_OK;
}

df_status df_compress_pages_fn(const struct df_page_compressor *c,
			       const uint8_t *src, size_t src_len, uint32_t page_size,
			       const uint32_t *idx, size_t idx_len, size_t npages,
			       uint8_t *dst, size_t dst_cap,
			       uint32_t *sizes_ret, size_t sizes_cap,
			       size_t *dst_len_ret)
{
	size_t pos = 0;

	if (df_check_page_batch(src_len, page_size, idx, idx_len, npages, sizes_cap) != DF_OK)
		return DF_ERR_INVALID;
	for (size_t k = 0; k < npages; k++) {
		const uint8_t *page = src + (size_t)(idx ? idx[k] : k) * page_size;
		size_t len = 0;
		int ok = 0;

		if (dst_cap - pos < page_size)
			return DF_ERR_OVERFLOW;
		if (c->kind == DF_PC_ZLIB) {
			// zlib's compress2(): one deflate stream per page, the same
			// bytes as makedumpfile's deflate(Z_FINISH) at that level.
			unsigned long out_len = page_size;
			int (*compress2)(uint8_t *, unsigned long *, const uint8_t *,
					 unsigned long, int) = c->fn_compress;
			ok = compress2(dst + pos, &out_len, page, page_size, c->level) == 0;
			len = out_len;
		} else if (c->kind == DF_PC_ZSTD) {
			size_t (*compress_cctx)(void *, void *, size_t, const void *, size_t, int) =
				c->fn_compress;
			unsigned (*is_error)(size_t) = c->fn_is_error;
			size_t r = compress_cctx(c->ctx, dst + pos, page_size, page, page_size,
						 c->level);
			ok = !is_error(r);
			len = r;
		} else if (c->kind == DF_PC_LIBDEFLATE) {
			// libdeflate_zlib_compress(): 0 when the result would not fit
			// in page_size - 1 bytes, i.e. the page is stored raw.
			size_t (*zlib_compress)(void *, const void *, size_t, void *, size_t) =
				c->fn_compress;
			len = zlib_compress(c->ctx, page, page_size, dst + pos, page_size - 1);
			ok = len != 0;
		} else {
			return DF_ERR_INVALID;
		}
		if (ok && len < page_size) {
			sizes_ret[k] = (uint32_t)len;
			pos += len;
		} else {
			memcpy(dst + pos, page, page_size);  // stored raw
			sizes_ret[k] = page_size;
			pos += page_size;
		}
	}
	*dst_len_ret = pos;
	return DF_OK;
}
