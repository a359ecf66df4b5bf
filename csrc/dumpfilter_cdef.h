// cffi cdef for dumpfilter.h (parsable subset: no preprocessor, no comments).
// Keep in sync with dumpfilter.h; the build compiles both together, so any
// difference in a struct or signature fails the build.
typedef enum df_status {
	DF_OK = 0,
	DF_ERR_INVALID = 1,
	DF_ERR_CORRUPT = 2,
	DF_ERR_OVERFLOW = 3,
} df_status;

enum df_page_class {
	DF_CLASS_KEEP = 0,
	DF_CLASS_ZERO = 1,
	DF_CLASS_CACHE = 2,
	DF_CLASS_CACHE_PRIVATE = 3,
	DF_CLASS_USER = 4,
	DF_CLASS_FREE = 5,
	DF_CLASS_HWPOISON = 6,
	DF_CLASS_OFFLINE = 7,
	DF_NCLASSES = 8,
};

enum df_dump_level {
	DF_DL_EXCLUDE_ZERO = 1,
	DF_DL_EXCLUDE_CACHE = 2,
	DF_DL_EXCLUDE_CACHE_PRI = 4,
	DF_DL_EXCLUDE_USER_DATA = 8,
	DF_DL_EXCLUDE_FREE = 16,
	DF_DL_MAX = 31,
};

enum df_compound_style {
	DF_COMPOUND_NONE = 0,
	DF_COMPOUND_FLAGS1 = 1,
	DF_COMPOUND_FIELDS_U8 = 2,
	DF_COMPOUND_FIELDS_U16 = 3,
};

struct df_page_layout {
	uint32_t sizeof_page;
	uint8_t big_endian;
	uint8_t compound_style;
	uint8_t _pad[2];
	int32_t off_flags;
	int32_t off_mapping;
	int32_t off_mapcount;
	int32_t off_private;
	int32_t off_compound_head;
	int32_t off_compound_order;
	int32_t off_compound_dtor;
	int32_t pg_lru;
	int32_t pg_private;
	int32_t pg_swapcache;
	int32_t pg_swapbacked;
	int32_t pg_slab;
	int32_t pg_hwpoison;
	int32_t pg_buddy;
	int32_t pg_hugetlb;
	uint64_t pg_head_mask;
	int32_t buddy_mapcount;
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
	int64_t hugetlb_dtor;
	int32_t nr_orders;
	int32_t _pad3;
};

struct df_classify_carry {
	uint64_t end_pfn;
	uint8_t class_id;
	uint8_t _pad[7];
};

df_status df_classify_pages(const uint8_t *pages, size_t pages_len, size_t npages,
			    size_t nextra, uint64_t first_pfn,
			    const uint8_t *exists, size_t exists_len,
			    uint32_t dump_level,
			    const struct df_page_layout *layout,
			    uint8_t *bitmap2, size_t bitmap2_len,
			    uint64_t *counts, size_t ncounts,
			    uint8_t *class_ret, size_t class_len,
			    struct df_classify_carry *carry);

df_status df_find_zero_pages(const uint8_t *data, size_t data_len, size_t npages,
			     uint32_t page_size, const uint8_t *mask, size_t mask_len,
			     uint8_t *zero_ret, size_t zero_len, uint64_t *count_ret);

df_status df_bitmap_count(const uint8_t *bitmap, size_t bitmap_len, uint64_t nbits,
			  uint64_t *count_ret);

df_status df_bitmap_set_range(uint8_t *bitmap, size_t bitmap_len, uint64_t start,
			      uint64_t end);

enum {
	DF_LZO1X_1_WORKMEM_SIZE = 16384 * 2,
};

size_t df_lzo1x_worst_size(size_t src_len);

df_status df_lzo1x_1_compress(const uint8_t *src, size_t src_len,
			      uint8_t *dst, size_t dst_cap, void *wrkmem,
			      size_t wrkmem_len, size_t *dst_len_ret);

df_status df_lzo1x_decompress_safe(const uint8_t *src, size_t src_len,
				   uint8_t *dst, size_t dst_cap,
				   size_t *dst_len_ret);

df_status df_select_pages(const uint8_t *mask, size_t mask_len,
			  const uint8_t *zero, size_t zero_len, size_t npages,
			  uint32_t *idx_ret, size_t idx_cap, size_t *count_ret);

df_status df_gather_pages(const uint8_t *src, size_t src_len, uint32_t page_size,
			  const uint32_t *idx, size_t idx_len, size_t count,
			  uint8_t *out, size_t out_len);

df_status df_lzo1x_1_compress_pages(const uint8_t *src, size_t src_len,
				    uint32_t page_size,
				    const uint32_t *idx, size_t idx_len, size_t npages,
				    uint8_t *dst, size_t dst_cap,
				    void *wrkmem, size_t wrkmem_len,
				    uint32_t *sizes_ret, size_t sizes_cap,
				    size_t *dst_len_ret);

df_status df_pack_descriptors(const uint8_t *mask, size_t mask_len,
			      const uint8_t *zero, size_t zero_len, size_t npages,
			      const uint32_t *sizes, size_t nsizes,
			      const int64_t *ref_offsets, size_t nref,
			      uint32_t page_size, uint32_t codec_flag,
			      int64_t data_offset, int64_t zero_offset,
			      uint8_t *out, size_t out_len,
			      size_t *count_ret, int64_t *data_end_ret);

enum df_page_compressor_kind {
	DF_PC_ZLIB = 1,  
	DF_PC_ZSTD = 2,  
	DF_PC_LIBDEFLATE = 3,  
};

struct df_page_compressor {
	int32_t kind;        
	int32_t level;       
	void *fn_compress;
	void *fn_is_error;
	void *ctx;           
};

df_status df_compress_pages_fn(const struct df_page_compressor *c,
			       const uint8_t *src, size_t src_len, uint32_t page_size,
			       const uint32_t *idx, size_t idx_len, size_t npages,
			       uint8_t *dst, size_t dst_cap,
			       uint32_t *sizes_ret, size_t sizes_cap,
			       size_t *dst_len_ret);

const char *df_build_version(void);
