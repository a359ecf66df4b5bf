// struct page classification with makedumpfile's semantics
// (docs: makedumpfile-reference.md §4). The first matching rule wins; a
// multi-page exclusion (buddy block, unaccepted block, whole folio) skips
// over the pages it covers, and a run that passes the end of the batch is
// handed to the next call through the carry.
#include <string.h>

#include "byteorder.h"
#include "checks.h"
#include "dumpfilter.h"

struct df_page_fields {
	uint64_t flags;
	uint64_t mapping;
	uint64_t private_;
	uint64_t compound_head;
	int32_t mapcount;
};

static inline int df_test_flag(uint64_t flags, int32_t bit)
{
	return bit >= 0 && bit < 64 && ((flags >> bit) & 1);
}

static inline int df_bit(const uint8_t *bitmap, size_t i)
{
	return (bitmap[i >> 3] >> (i & 7)) & 1;
}

static void df_read_fields(const uint8_t *p, const struct df_page_layout *l,
			   struct df_page_fields *f)
{
	int be = l->big_endian;

	f->flags = df_load64(p + l->off_flags, be);
	f->mapping = df_load64(p + l->off_mapping, be);
	f->mapcount = l->off_mapcount >= 0 ?
		(int32_t)df_load32(p + l->off_mapcount, be) : 0;
	f->private_ = l->off_private >= 0 ? df_load64(p + l->off_private, be) : 0;
	f->compound_head = l->off_compound_head >= 0 ?
		df_load64(p + l->off_compound_head, be) : 0;
}

static int df_is_slab(const struct df_page_fields *f,
		      const struct df_page_layout *l)
{
	// Since Linux kernel commit 46df8e73a4a3 ("mm: free up PG_slab") (in
	// v6.10), slab pages are a page type in _mapcount.
	if (l->have_slab_mapcount && f->mapcount == l->slab_mapcount)
		return 1;
	return df_test_flag(f->flags, l->pg_slab);
}

static int df_is_anon(const struct df_page_fields *f,
		      const struct df_page_layout *l)
{
	return (f->mapping & 1) && !df_is_slab(f, l);
}

static int df_is_cache(const struct df_page_fields *f,
		       const struct df_page_layout *l)
{
	if (df_test_flag(f->flags, l->pg_lru))
		return 1;
	// PG_swapcache only means swap cache together with PG_swapbacked
	// (Linux kernel commit 6326fec1122c, v4.10); older kernels lack the
	// latter flag.
	return (l->pg_swapbacked < 0 || df_test_flag(f->flags, l->pg_swapbacked)) &&
	       df_test_flag(f->flags, l->pg_swapcache);
}

static int df_has_buddy_test(const struct df_page_layout *l)
{
	if (l->off_private < 0)
		return 0;
	if (l->have_buddy_mapcount)
		return l->off_mapcount >= 0;
	return l->pg_buddy >= 0;
}

static int df_is_buddy(const struct df_page_fields *f,
		       const struct df_page_layout *l)
{
	if (l->have_buddy_mapcount)
		return !df_is_slab(f, l) && f->mapcount == l->buddy_mapcount;
	return df_test_flag(f->flags, l->pg_buddy);
}

// Order and hugetlb marker of a compound head, read from page[1].
static void df_compound_info(const uint8_t *page1, uint64_t pfn,
			     const struct df_page_fields *head,
			     const struct df_page_layout *l,
			     unsigned *order_ret, int *hugetlb_ret)
{
	int be = l->big_endian;
	unsigned order = 0;
	int hugetlb = 0;

	switch (l->compound_style) {
	case DF_COMPOUND_FLAGS1: {
		uint64_t flags1 = df_load64(page1 + l->off_flags, be);

		order = (unsigned)(flags1 & 0xff);
		// Since Linux kernel commit d99e3140a4d3 ("mm: turn folio_test_hugetlb
		// into a PageType") (in v6.9), hugetlb is a page type in _mapcount;
		// 6.6 .. 6.8 had PG_hugetlb in the first tail page's flags.
		if (l->have_hugetlb_mapcount)
			hugetlb = head->mapcount == l->hugetlb_mapcount;
		else
			hugetlb = df_test_flag(flags1, l->pg_hugetlb);
		break;
	}
	case DF_COMPOUND_FIELDS_U8:
	case DF_COMPOUND_FIELDS_U16: {
		int wide = l->compound_style == DF_COMPOUND_FIELDS_U16;
		uint64_t dtor = 0;

		if (l->off_compound_order >= 0)
			order = wide ? df_load16(page1 + l->off_compound_order, be)
				     : page1[l->off_compound_order];
		if (l->off_compound_dtor >= 0)
			dtor = wide ? df_load16(page1 + l->off_compound_dtor, be)
				    : page1[l->off_compound_dtor];
		hugetlb = l->have_hugetlb_dtor && (int64_t)dtor == l->hugetlb_dtor;
		break;
	}
	default:
		break;
	}
	if (order >= 64 || (pfn & ((UINT64_C(1) << order) - 1)) != 0)
		order = 0;  // not a valid head at this pfn
	*order_ret = order;
	*hugetlb_ret = hugetlb;
}

static int df_decide(const struct df_page_fields *f, int hugetlb,
		     uint32_t level, const struct df_page_layout *l,
		     uint64_t *nr_pages)
{
	if ((level & DF_DL_EXCLUDE_FREE) && df_has_buddy_test(l) &&
	    df_is_buddy(f, l)) {
		if (f->private_ >= 64 ||
		    (l->nr_orders >= 0 && f->private_ >= (uint64_t)l->nr_orders))
			return DF_CLASS_KEEP;  // implausible order: keep
		*nr_pages = UINT64_C(1) << f->private_;
		return DF_CLASS_FREE;
	}
	// Unaccepted memory (TDX/SNP) is queued in MAX_PAGE_ORDER blocks
	// (Linux kernel commit dcdfdd40fa82, v6.5).
	if ((level & DF_DL_EXCLUDE_FREE) && l->have_unaccepted_mapcount &&
	    f->mapcount == l->unaccepted_mapcount) {
		*nr_pages = l->nr_orders > 0 && l->nr_orders <= 64 ?
			UINT64_C(1) << (l->nr_orders - 1) : 1;
		return DF_CLASS_FREE;
	}
	int cache = df_is_cache(f, l);
	int anon = df_is_anon(f, l);
	int priv = df_test_flag(f->flags, l->pg_private);

	if ((level & DF_DL_EXCLUDE_CACHE) && cache && !priv && !anon)
		return DF_CLASS_CACHE;
	if ((level & DF_DL_EXCLUDE_CACHE_PRI) && cache && !anon)
		return priv ? DF_CLASS_CACHE_PRIVATE : DF_CLASS_CACHE;
	if ((level & DF_DL_EXCLUDE_USER_DATA) && (anon || hugetlb))
		return DF_CLASS_USER;
	if (df_test_flag(f->flags, l->pg_hwpoison))
		return DF_CLASS_HWPOISON;
	if (l->have_offline_mapcount && !df_is_slab(f, l) &&
	    f->mapcount == l->offline_mapcount)
		return DF_CLASS_OFFLINE;
	return DF_CLASS_KEEP;
}

static inline void df_exclude(uint8_t *bitmap2, uint64_t *counts, size_t i,
			      uint8_t class_id, uint8_t *class_ret)
{
	uint8_t bit = (uint8_t)(1u << (i & 7));

	if (bitmap2[i >> 3] & bit) {
		bitmap2[i >> 3] &= (uint8_t)~bit;
		counts[class_id]++;
	}
	if (class_ret)
		class_ret[i] = class_id;
}

df_status df_classify_pages(const uint8_t *pages, size_t pages_len, size_t npages,
			    size_t nextra, uint64_t first_pfn,
			    const uint8_t *exists, size_t exists_len,
			    uint32_t dump_level,
			    const struct df_page_layout *layout,
			    uint8_t *bitmap2, size_t bitmap2_len,
			    uint64_t *counts, size_t ncounts,
			    uint8_t *class_ret, size_t class_len,
			    struct df_classify_carry *carry)
{
	const struct df_page_layout *l = layout;
	size_t i = 0;

	if (l->sizeof_page < 8 || l->off_flags < 0 || l->off_mapping < 0 ||
	    (uint32_t)l->off_flags + 8 > l->sizeof_page ||
	    (uint32_t)l->off_mapping + 8 > l->sizeof_page ||
	    (l->off_mapcount >= 0 && (uint32_t)l->off_mapcount + 4 > l->sizeof_page) ||
	    (l->off_private >= 0 && (uint32_t)l->off_private + 8 > l->sizeof_page) ||
	    (l->off_compound_head >= 0 &&
	     (uint32_t)l->off_compound_head + 8 > l->sizeof_page) ||
	    (l->off_compound_order >= 0 &&
	     (uint32_t)l->off_compound_order + 2 > l->sizeof_page) ||
	    (l->off_compound_dtor >= 0 &&
	     (uint32_t)l->off_compound_dtor + 2 > l->sizeof_page) ||
	    dump_level > DF_DL_MAX || nextra > 1 || l->nr_orders > 64)
		return DF_ERR_INVALID;
	if (!df_fits(npages + nextra, l->sizeof_page, pages_len) ||
	    exists_len < df_bitmap_bytes(npages) || bitmap2_len < df_bitmap_bytes(npages) ||
	    ncounts < DF_NCLASSES || (class_ret && class_len < npages) || npages > SIZE_MAX - 1)
		return DF_ERR_INVALID;
	if (class_ret)
		memset(class_ret, DF_CLASS_KEEP, npages);

	// Finish a run that an earlier batch started.
	while (i < npages && first_pfn + i < carry->end_pfn) {
		df_exclude(bitmap2, counts, i, carry->class_id, class_ret);
		i++;
	}

	for (; i < npages; i++) {
		const uint8_t *p = pages + i * (size_t)l->sizeof_page;
		uint64_t pfn = first_pfn + i, nr_pages = 1;
		struct df_page_fields f;
		unsigned order = 0;
		int hugetlb = 0, class_id;

		if (!df_bit(exists, i))
			continue;
		df_read_fields(p, l, &f);
		if (l->pg_head_mask && (f.flags & l->pg_head_mask) &&
		    i + 1 < npages + nextra)
			df_compound_info(p + l->sizeof_page, pfn, &f, l, &order,
					 &hugetlb);
		// Tail pages follow their head: excluded with it, or kept.
		if (f.compound_head & 1)
			continue;
		nr_pages = UINT64_C(1) << order;
		class_id = df_decide(&f, hugetlb, dump_level, l, &nr_pages);
		if (class_id == DF_CLASS_KEEP)
			continue;
		for (uint64_t k = 0; k < nr_pages; k++) {
			if (i + k >= npages) {
				carry->end_pfn = pfn + nr_pages;
				carry->class_id = (uint8_t)class_id;
				return DF_OK;
			}
			df_exclude(bitmap2, counts, i + k, (uint8_t)class_id,
				   class_ret);
		}
		i += nr_pages - 1;
	}
	return DF_OK;
}
