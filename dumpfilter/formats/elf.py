"""ELF64 little-endian core-file layout shared by the ELF reader and the
``-E`` writer (notes are in ``dumpfilter.formats.elfnotes``)."""
from __future__ import annotations

import struct

ELFMAG = b"\x7fELF"
#: e_ident[EI_CLASS], e_ident[EI_DATA], e_ident[EI_VERSION] of the files we
#: read and write.
ELFCLASS64 = 2
ELFDATA2LSB = 1
EV_CURRENT = 1

ET_CORE = 4
EM_X86_64 = 62
EM_AARCH64 = 183
#: utsname ``machine`` -> e_machine, for formats that record only the former.
E_MACHINES = {"x86_64": EM_X86_64, "aarch64": EM_AARCH64}
PT_LOAD = 1
PT_NOTE = 4
#: e_phnum value meaning "the real count is in section 0's sh_info".
PN_XNUM = 0xFFFF

#: Elf64_Ehdr, 64 bytes: 0 e_ident[16], 16 e_type, 18 e_machine,
#: 20 e_version, 24 e_entry, 32 e_phoff, 40 e_shoff, 48 e_flags,
#: 52 e_ehsize, 54 e_phentsize, 56 e_phnum, 58 e_shentsize, 60 e_shnum,
#: 62 e_shstrndx.
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
#: Elf64_Phdr, 56 bytes: 0 p_type, 4 p_flags, 8 p_offset, 16 p_vaddr,
#: 24 p_paddr, 32 p_filesz, 40 p_memsz, 48 p_align.
PHDR = struct.Struct("<IIQQQQQQ")
#: Elf64_Shdr, 64 bytes: 0 sh_name, 4 sh_type, 8 sh_flags, 16 sh_addr,
#: 24 sh_offset, 32 sh_size, 40 sh_link, 44 sh_info, 48 sh_addralign,
#: 56 sh_entsize.
SHDR = struct.Struct("<IIQQQQIIQQ")
#: Index of sh_info in an unpacked SHDR.
SH_INFO = 7
