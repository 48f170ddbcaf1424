//! SMMU registers: §6.2 (register map) and §6.3 (register formats) of IHI 0070 G.b, for the
//! Non-secure programming interface.
//!
//! The registers occupy two consecutive 64KB pages (§6.1). Offsets here are from the SMMU's
//! base, so a page 1 register is `PAGE1 + its offset in page 1`. SMMU_EVENTQ_PROD/CONS and
//! SMMU_PRIQ_PROD/CONS live in page 1 (§6.3.95 to §6.3.98); the same offsets in page 0 are an
//! OPTIONAL alias, RAZ/WI when not implemented (§6.2), declared here as `*_PAGE0_ALIAS`. Whether
//! the model implements the alias is an IMPLEMENTATION DEFINED choice for `hw`.
//!
//! Each register is a typed offset ([`Reg32`] or [`Reg64`], so the type checks the access
//! width) and each field, declared with `bitfields!` in a module named after the register, a
//! [`Field32`](sviommu_memory::bits::Field32) of a 32-bit register or a
//! [`Field`](sviommu_memory::bits::Field) of a 64-bit one. Registers that
//! share a layout share a module: [`cr0`] is also CR0ACK, [`irq_ctrl`] also IRQ_CTRLACK,
//! [`gerror`] also GERRORN, [`queue_base`] is CMDQ/EVENTQ/PRIQ_BASE, [`irq_cfg0`] to
//! [`irq_cfg2`] are GERROR/EVENTQ/PRIQ_IRQ_CFGn, [`prod`] and [`cons`] the queue indices.

use sviommu_memory::bits::{Reg32, Reg64};

use super::Reserved;

/// The size of a register page.
pub const PAGE_BYTES: u64 = 0x1_0000;
/// Base of register page 1.
pub const PAGE1: u64 = PAGE_BYTES;

/// SMMU_IDR0 (§6.3.1): features.
pub const IDR0: Reg32 = Reg32(0x0000);
/// SMMU_IDR1 (§6.3.2): table, queue and ID sizes.
pub const IDR1: Reg32 = Reg32(0x0004);
/// SMMU_IDR2 (§6.3.3): VATOS page.
pub const IDR2: Reg32 = Reg32(0x0008);
/// SMMU_IDR3 (§6.3.4): more features.
pub const IDR3: Reg32 = Reg32(0x000c);
/// SMMU_IDR4 (§6.3.5): IMPLEMENTATION DEFINED.
pub const IDR4: Reg32 = Reg32(0x0010);
/// SMMU_IDR5 (§6.3.6): address sizes, granules, stall limit.
pub const IDR5: Reg32 = Reg32(0x0014);
/// SMMU_IIDR (§6.3.7): implementation identification.
pub const IIDR: Reg32 = Reg32(0x0018);
/// SMMU_AIDR (§6.3.8): architecture revision.
pub const AIDR: Reg32 = Reg32(0x001c);
/// SMMU_CR0 (§6.3.9): enables.
pub const CR0: Reg32 = Reg32(0x0020);
/// SMMU_CR0ACK (§6.3.10): CR0 as the SMMU has applied it.
pub const CR0ACK: Reg32 = Reg32(0x0024);
/// SMMU_CR1 (§6.3.11): table and queue access attributes.
pub const CR1: Reg32 = Reg32(0x0028);
/// SMMU_CR2 (§6.3.12): E2H, RECINVSID, PTM.
pub const CR2: Reg32 = Reg32(0x002c);
/// SMMU_STATUSR (§6.3.13).
pub const STATUSR: Reg32 = Reg32(0x0040);
/// SMMU_GBPA (§6.3.14): global bypass attributes while SMMUEN == 0.
pub const GBPA: Reg32 = Reg32(0x0044);
/// SMMU_IRQ_CTRL (§6.3.16): interrupt enables.
pub const IRQ_CTRL: Reg32 = Reg32(0x0050);
/// SMMU_IRQ_CTRLACK (§6.3.18).
pub const IRQ_CTRLACK: Reg32 = Reg32(0x0054);
/// SMMU_GERROR (§6.3.19): active global errors (toggled against GERRORN).
pub const GERROR: Reg32 = Reg32(0x0060);
/// SMMU_GERRORN (§6.3.20): global error acknowledgements.
pub const GERRORN: Reg32 = Reg32(0x0064);
/// SMMU_GERROR_IRQ_CFG0 (§6.3.21): GERROR MSI address.
pub const GERROR_IRQ_CFG0: Reg64 = Reg64(0x0068);
/// SMMU_GERROR_IRQ_CFG1 (§6.3.22): GERROR MSI data.
pub const GERROR_IRQ_CFG1: Reg32 = Reg32(0x0070);
/// SMMU_GERROR_IRQ_CFG2 (§6.3.23): GERROR MSI attributes.
pub const GERROR_IRQ_CFG2: Reg32 = Reg32(0x0074);
/// SMMU_STRTAB_BASE (§6.3.24).
pub const STRTAB_BASE: Reg64 = Reg64(0x0080);
/// SMMU_STRTAB_BASE_CFG (§6.3.25).
pub const STRTAB_BASE_CFG: Reg32 = Reg32(0x0088);
/// SMMU_CMDQ_BASE (§6.3.26).
pub const CMDQ_BASE: Reg64 = Reg64(0x0090);
/// SMMU_CMDQ_PROD (§6.3.27).
pub const CMDQ_PROD: Reg32 = Reg32(0x0098);
/// SMMU_CMDQ_CONS (§6.3.28).
pub const CMDQ_CONS: Reg32 = Reg32(0x009c);
/// SMMU_EVENTQ_BASE (§6.3.29).
pub const EVENTQ_BASE: Reg64 = Reg64(0x00a0);
/// SMMU_EVENTQ_PROD (§6.3.95), in page 1.
pub const EVENTQ_PROD: Reg32 = Reg32(PAGE1 + 0x00a8);
/// SMMU_EVENTQ_CONS (§6.3.96), in page 1.
pub const EVENTQ_CONS: Reg32 = Reg32(PAGE1 + 0x00ac);
/// Optional page 0 alias of SMMU_EVENTQ_PROD, otherwise RAZ/WI (§6.2).
pub const EVENTQ_PROD_PAGE0_ALIAS: Reg32 = Reg32(0x00a8);
/// Optional page 0 alias of SMMU_EVENTQ_CONS, otherwise RAZ/WI (§6.2).
pub const EVENTQ_CONS_PAGE0_ALIAS: Reg32 = Reg32(0x00ac);
/// SMMU_EVENTQ_IRQ_CFG0 (§6.3.30).
pub const EVENTQ_IRQ_CFG0: Reg64 = Reg64(0x00b0);
/// SMMU_EVENTQ_IRQ_CFG1 (§6.3.31).
pub const EVENTQ_IRQ_CFG1: Reg32 = Reg32(0x00b8);
/// SMMU_EVENTQ_IRQ_CFG2 (§6.3.32).
pub const EVENTQ_IRQ_CFG2: Reg32 = Reg32(0x00bc);
/// SMMU_PRIQ_BASE (§6.3.33).
pub const PRIQ_BASE: Reg64 = Reg64(0x00c0);
/// SMMU_PRIQ_PROD (§6.3.97), in page 1.
pub const PRIQ_PROD: Reg32 = Reg32(PAGE1 + 0x00c8);
/// SMMU_PRIQ_CONS (§6.3.98), in page 1.
pub const PRIQ_CONS: Reg32 = Reg32(PAGE1 + 0x00cc);
/// Optional page 0 alias of SMMU_PRIQ_PROD, otherwise RAZ/WI (§6.2).
pub const PRIQ_PROD_PAGE0_ALIAS: Reg32 = Reg32(0x00c8);
/// Optional page 0 alias of SMMU_PRIQ_CONS, otherwise RAZ/WI (§6.2).
pub const PRIQ_CONS_PAGE0_ALIAS: Reg32 = Reg32(0x00cc);
/// SMMU_PRIQ_IRQ_CFG0 (§6.3.34).
pub const PRIQ_IRQ_CFG0: Reg64 = Reg64(0x00d0);
/// SMMU_PRIQ_IRQ_CFG1 (§6.3.35).
pub const PRIQ_IRQ_CFG1: Reg32 = Reg32(0x00d8);
/// SMMU_PRIQ_IRQ_CFG2 (§6.3.36).
pub const PRIQ_IRQ_CFG2: Reg32 = Reg32(0x00dc);

/// SMMU_IDR0 fields (§6.3.1).
pub mod idr0 {
    sviommu_memory::bitfields! { reg32;
        /// Stage 2 translation supported.
        S2P = bit(0);
        /// Stage 1 translation supported.
        S1P = bit(1);
        /// Translation table formats: 0b01 VMSAv8-32 LPAE, 0b10 VMSAv8-64, 0b11 both.
        TTF = bits(3, 2);
        /// Coherent access to translations, structures and queues.
        COHACC = bit(4);
        /// Broadcast TLB maintenance.
        BTM = bit(5);
        /// Hardware table updates: 0b00 none, 0b01 AF, 0b10 AF and dirty, 0b11 also table AF.
        HTTU = bits(7, 6);
        /// Dormant hint (SMMU_STATUSR.DORMANT).
        DORMHINT = bit(8);
        /// Hypervisor stage 1 contexts (EL2 StreamWorld).
        HYP = bit(9);
        /// PCIe ATS.
        ATS = bit(10);
        /// Split-stage (stage 1 only) ATS not supported.
        NS1ATS = bit(11);
        /// 16-bit ASIDs.
        ASID16 = bit(12);
        /// Message-signalled interrupts.
        MSI = bit(13);
        /// WFE wake-up events.
        SEV = bit(14);
        /// Address Translation Operations.
        ATOS = bit(15);
        /// PCIe PRI.
        PRI = bit(16);
        /// VMID wildcard matching.
        VMW = bit(17);
        /// 16-bit VMIDs.
        VMID16 = bit(18);
        /// Two-level CD tables.
        CD2L = bit(19);
        /// Virtual ATOS page.
        VATOS = bit(20);
        /// Endianness of table walks: 0b00 mixed, 0b10 little, 0b11 big.
        TTENDIAN = bits(22, 21);
        /// ATS Translation Request error recording.
        ATSRECERR = bit(23);
        /// Stall model, see [`super::StallModel`].
        STALL_MODEL = bits(25, 24);
        /// Terminate model: 1 means terminated transactions always abort (CD.A must be 1).
        TERM_MODEL = bit(26);
        /// Stream table levels: 0b00 linear, 0b01 two-level too.
        ST_LEVEL = bits(28, 27);
        /// RME implemented.
        RME_IMPL = bit(30);
    }
}

/// SMMU_IDR1 fields (§6.3.2). The `*S` and `*SIZE` fields are log2 of a maximum.
pub mod idr1 {
    sviommu_memory::bitfields! { reg32;
        /// Bits of StreamID.
        SIDSIZE = bits(5, 0);
        /// Bits of SubstreamID.
        SSIDSIZE = bits(10, 6);
        /// log2 of the largest PRI queue.
        PRIQS = bits(15, 11);
        /// log2 of the largest Event queue.
        EVENTQS = bits(20, 16);
        /// log2 of the largest Command queue.
        CMDQS = bits(25, 21);
        /// Incoming permission attributes can be overridden (PRIVCFG, INSTCFG, NSCFG).
        ATTR_PERMS_OVR = bit(26);
        /// Incoming memory attributes can be overridden (MTCFG, MemAttr, ALLOCCFG, SHCFG).
        ATTR_TYPES_OVR = bit(27);
        /// Base addresses are relative (embedded implementations).
        REL = bit(28);
        /// Queue base registers are fixed.
        QUEUES_PRESET = bit(29);
        /// Table base registers are fixed.
        TABLES_PRESET = bit(30);
        /// Enhanced Command queue interfaces.
        ECMDQ = bit(31);
    }
}

/// SMMU_IDR2 fields (§6.3.3).
pub mod idr2 {
    sviommu_memory::bitfields! { reg32;
        /// Offset of the VATOS page, in 64KB units.
        BA_VATOS = bits(9, 0);
    }
}

/// SMMU_IDR3 fields (§6.3.4).
pub mod idr3 {
    sviommu_memory::bitfields! { reg32;
        /// Hierarchical attribute disables (CD.HAD0/1).
        HAD = bit(2);
        /// Page-based hardware attributes (STE.S2HWU*, CD.HWU*).
        PBHA = bit(3);
        /// EL0/EL1 execute-never distinction at stage 2.
        XNX = bit(4);
        /// PRI auto-responses always carry a PASID.
        PPS = bit(5);
        /// MPAM.
        MPAM = bit(7);
        /// Stage 2 forced write-back (STE.S2FWB).
        FWB = bit(8);
        /// Small translation tables (TxSZ up to 48).
        STT = bit(9);
        /// Range-based invalidation and the TTL hint.
        RIL = bit(10);
        /// Break-before-make level.
        BBML = bits(12, 11);
        /// E0PD.
        E0PD = bit(13);
        /// Table walks to Device memory behave as Normal Non-cacheable.
        PTWNNC = bit(14);
        /// Device Permission Table.
        DPT = bit(15);
        /// PASIDs on ATS Translated transactions.
        PASIDTT = bit(16);
        /// Enhanced PAN.
        EPAN = bit(17);
        /// Stage 1 permission indirection.
        S1PI = bit(18);
        /// Stage 2 permission indirection.
        S2PI = bit(19);
        /// Stage 2 permission overlay.
        S2PO = bit(20);
        /// Translation hardening.
        THE = bit(21);
        /// FEAT_MTE_PERM.
        MTEPERM = bit(22);
        /// Attribute index enhancement.
        AIE = bit(23);
    }
}

/// SMMU_IDR5 fields (§6.3.6).
pub mod idr5 {
    sviommu_memory::bitfields! { reg32;
        /// Output address size (see [`crate::spec::address_size_bits`]).
        OAS = bits(2, 0);
        /// 4KB granule.
        GRAN4K = bit(4);
        /// 16KB granule.
        GRAN16K = bit(5);
        /// 64KB granule.
        GRAN64K = bit(6);
        /// 52-bit addresses with 4KB and 16KB granules (FEAT_LPA2).
        DS = bit(7);
        /// 128-bit descriptors.
        D128 = bit(8);
        /// Virtual address extend: 0b00 48-bit, 0b01 52-bit, 0b10 56-bit VAs.
        VAX = bits(11, 10);
        /// Maximum number of outstanding stalled transactions.
        STALL_MAX = bits(31, 16);
    }
}

/// SMMU_IIDR fields (§6.3.7).
pub mod iidr {
    sviommu_memory::bitfields! { reg32;
        /// JEP106 implementer code.
        IMPLEMENTER = bits(11, 0);
        /// Minor revision.
        REVISION = bits(15, 12);
        /// Major revision.
        VARIANT = bits(19, 16);
        /// Product.
        PRODUCTID = bits(31, 20);
    }
}

/// SMMU_AIDR fields (§6.3.8): SMMUv3.x is ArchMajorRev 0, ArchMinorRev x.
pub mod aidr {
    sviommu_memory::bitfields! { reg32;
        /// Minor architecture revision.
        ARCHMINORREV = bits(3, 0);
        /// Major architecture revision.
        ARCHMAJORREV = bits(7, 4);
    }
}

/// SMMU_CR0 and SMMU_CR0ACK fields (§6.3.9, §6.3.10).
pub mod cr0 {
    sviommu_memory::bitfields! { reg32;
        /// SMMU enable (translation and configuration structures in use).
        SMMUEN = bit(0);
        /// PRI queue enable.
        PRIQEN = bit(1);
        /// Event queue enable.
        EVENTQEN = bit(2);
        /// Command queue enable.
        CMDQEN = bit(3);
        /// ATS Translated traffic is checked against the STE.
        ATSCHK = bit(4);
        /// VMID wildcard width for TLB invalidations.
        VMW = bits(8, 6);
        /// DPT walks enabled.
        DPT_WALK_EN = bit(10);
    }
}

/// SMMU_CR1 fields (§6.3.11): cacheability (0b00 NC, 0b01 WB, 0b10 WT) and shareability of
/// table and queue accesses.
pub mod cr1 {
    sviommu_memory::bitfields! { reg32;
        /// Queue inner cacheability.
        QUEUE_IC = bits(1, 0);
        /// Queue outer cacheability.
        QUEUE_OC = bits(3, 2);
        /// Queue shareability.
        QUEUE_SH = bits(5, 4);
        /// Table inner cacheability.
        TABLE_IC = bits(7, 6);
        /// Table outer cacheability.
        TABLE_OC = bits(9, 8);
        /// Table shareability.
        TABLE_SH = bits(11, 10);
    }
}

/// SMMU_CR2 fields (§6.3.12).
pub mod cr2 {
    sviommu_memory::bitfields! { reg32;
        /// EL2-E2H translation regime for STRW == EL2.
        E2H = bit(0);
        /// Record C_BAD_STREAMID for invalid StreamIDs.
        RECINVSID = bit(1);
        /// Private TLB maintenance: ignore broadcast invalidations.
        PTM = bit(2);
        /// Record configuration errors of ATS Translated transactions.
        REC_CFG_ATS = bit(3);
    }
}

/// SMMU_STATUSR fields (§6.3.13).
pub mod statusr {
    sviommu_memory::bitfields! { reg32;
        /// The SMMU and its caches are dormant.
        DORMANT = bit(0);
    }
}

/// SMMU_GBPA fields (§6.3.14): the attributes of bypassing transactions while SMMUEN == 0.
pub mod gbpa {
    sviommu_memory::bitfields! { reg32;
        /// Memory type override value.
        MEMATTR = bits(3, 0);
        /// Override the memory type with MemAttr.
        MTCFG = bit(4);
        /// Allocation hints override.
        ALLOCCFG = bits(11, 8);
        /// Shareability override.
        SHCFG = bits(13, 12);
        /// Privilege override.
        PRIVCFG = bits(17, 16);
        /// Instruction/data override.
        INSTCFG = bits(19, 18);
        /// Abort all incoming transactions.
        ABORT = bit(20);
        /// Written 1 with the new value; reads 1 until the update has taken effect.
        UPDATE = bit(31);
    }
}

/// SMMU_IRQ_CTRL and SMMU_IRQ_CTRLACK fields (§6.3.16, §6.3.18).
pub mod irq_ctrl {
    sviommu_memory::bitfields! { reg32;
        /// Global error interrupt enable.
        GERROR_IRQEN = bit(0);
        /// PRI queue interrupt enable.
        PRIQ_IRQEN = bit(1);
        /// Event queue interrupt enable.
        EVENTQ_IRQEN = bit(2);
    }
}

/// SMMU_GERROR and SMMU_GERRORN fields (§6.3.19, §6.3.20): an error is active while its GERROR
/// bit differs from its GERRORN bit.
pub mod gerror {
    sviommu_memory::bitfields! { reg32;
        /// Command queue error (reason in SMMU_CMDQ_CONS.ERR).
        CMDQ_ERR = bit(0);
        /// Event queue access aborted.
        EVENTQ_ABT_ERR = bit(2);
        /// PRI queue access aborted.
        PRIQ_ABT_ERR = bit(3);
        /// CMD_SYNC MSI write aborted.
        MSI_CMDQ_ABT_ERR = bit(4);
        /// Event queue MSI write aborted.
        MSI_EVENTQ_ABT_ERR = bit(5);
        /// PRI queue MSI write aborted.
        MSI_PRIQ_ABT_ERR = bit(6);
        /// GERROR MSI write aborted.
        MSI_GERROR_ABT_ERR = bit(7);
        /// Service Failure Mode entered.
        SFM_ERR = bit(8);
        /// ECMDQ error (GERROR only; not in GERRORN).
        CMDQP_ERR = bit(9);
        /// DPT error.
        DPT_ERR = bit(10);
    }
}

/// SMMU_*_IRQ_CFG0 fields (§6.3.21, §6.3.30, §6.3.34): the MSI address.
pub mod irq_cfg0 {
    sviommu_memory::bitfields! { reg64;
        /// MSI address bits `[55:2]` in place; 0 disables the MSI.
        ADDR = bits(55, 2);
    }
}

/// SMMU_*_IRQ_CFG1 fields (§6.3.22, §6.3.31, §6.3.35): the MSI payload.
pub mod irq_cfg1 {
    sviommu_memory::bitfields! { reg32;
        /// MSI data.
        DATA = bits(31, 0);
    }
}

/// SMMU_*_IRQ_CFG2 fields (§6.3.23, §6.3.32, §6.3.36): the MSI write's attributes.
pub mod irq_cfg2 {
    sviommu_memory::bitfields! { reg32;
        /// Memory type (STE.MemAttr encoding).
        MEMATTR = bits(3, 0);
        /// Shareability.
        SH = bits(5, 4);
        /// PRIQ_IRQ_CFG2 only: interrupt on a request with Last set rather than on non-empty.
        LO = bit(31);
    }
}

/// SMMU_STRTAB_BASE fields (§6.3.24).
pub mod strtab_base {
    sviommu_memory::bitfields! { reg64;
        /// Stream table base, address bits `[55:6]` in place.
        ADDR = bits(55, 6);
        /// Read-allocate hint.
        RA = bit(62);
    }
}

/// SMMU_STRTAB_BASE_CFG fields (§6.3.25).
pub mod strtab_base_cfg {
    sviommu_memory::bitfields! { reg32;
        /// log2 of the number of StreamIDs the table covers.
        LOG2SIZE = bits(5, 0);
        /// Two-level tables: StreamID bits below SPLIT index the level-2 array.
        SPLIT = bits(10, 6);
        /// Format, see [`super::StrtabFmt`].
        FMT = bits(17, 16);
    }
}

/// SMMU_CMDQ_BASE, SMMU_EVENTQ_BASE and SMMU_PRIQ_BASE fields (§6.3.26, §6.3.29, §6.3.33).
pub mod queue_base {
    sviommu_memory::bitfields! { reg64;
        /// log2 of the number of entries (capped at IDR1.CMDQS/EVENTQS/PRIQS).
        LOG2SIZE = bits(4, 0);
        /// Queue base, address bits `[55:5]` in place.
        ADDR = bits(55, 5);
        /// CMDQ_BASE: read-allocate hint.
        RA = bit(62);
        /// EVENTQ_BASE, PRIQ_BASE: write-allocate hint.
        WA = bit(62);
    }
}

/// SMMU_CMDQ_PROD, SMMU_EVENTQ_PROD, SMMU_PRIQ_PROD fields (§6.3.27, §6.3.95, §6.3.97).
pub mod prod {
    sviommu_memory::bitfields! { reg32;
        /// Write index and its wrap flag; see [`super::QueuePointer`].
        WR = bits(19, 0);
        /// EVENTQ_PROD, PRIQ_PROD: the queue has overflowed (toggles; acknowledged through CONS).
        OVFLG = bit(31);
    }
}

/// SMMU_CMDQ_CONS, SMMU_EVENTQ_CONS, SMMU_PRIQ_CONS fields (§6.3.28, §6.3.96, §6.3.98).
pub mod cons {
    sviommu_memory::bitfields! { reg32;
        /// Read index and its wrap flag; see [`super::QueuePointer`].
        RD = bits(19, 0);
        /// CMDQ_CONS: the CERROR code of the command at RD ([`crate::spec::CError`]).
        ERR = bits(30, 24);
        /// EVENTQ_CONS, PRIQ_CONS: overflow acknowledged (software copies OVFLG).
        OVACKFLG = bit(31);
    }
}

/// SMMU_IDR0.STALL_MODEL (§6.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StallModel {
    /// 0b00: both the stall and terminate fault models.
    StallAndTerminate = 0b00,
    /// 0b01: no stall; STE.S2S and CD.S must be 0; CMD_RESUME and CMD_STALL_TERM are illegal.
    TerminateOnly = 0b01,
    /// 0b10: stall is forced; STE.S2S and CD.S must be 1.
    StallForced = 0b10,
}

impl TryFrom<u8> for StallModel {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        match raw {
            0b00 => Ok(StallModel::StallAndTerminate),
            0b01 => Ok(StallModel::TerminateOnly),
            0b10 => Ok(StallModel::StallForced),
            _ => Err(Reserved(u64::from(raw))),
        }
    }
}

/// SMMU_STRTAB_BASE_CFG.FMT (§6.3.25).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StrtabFmt {
    /// 0b00: STRTAB_BASE points at an array of STEs.
    Linear = 0b00,
    /// 0b01: STRTAB_BASE points at an array of L1STDs.
    TwoLevel = 0b01,
}

impl TryFrom<u8> for StrtabFmt {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        match raw {
            0b00 => Ok(StrtabFmt::Linear),
            0b01 => Ok(StrtabFmt::TwoLevel),
            _ => Err(Reserved(u64::from(raw))),
        }
    }
}

/// A queue index with its wrap flag, as in the WR and RD fields (§6.3.27, §6.3.28): for a queue
/// of 2^QS entries (QS = the queue's LOG2SIZE), bits `[QS-1:0]` are the index and bit `[QS]` the
/// wrap flag; bits above are ignored. The queue is empty when PROD and CONS are equal, full when
/// the indices are equal and the wrap flags differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct QueuePointer {
    /// Entry index, below 2^QS.
    pub index: u32,
    /// Wrap flag.
    pub wrap: bool,
}

impl QueuePointer {
    /// The largest LOG2SIZE the 20-bit WR/RD fields can express (2^19 entries).
    pub const MAX_LOG2SIZE: u8 = 19;

    /// The index and wrap flag in a PROD/CONS register value, for a queue of 2^`log2size`
    /// entries (capped at [`Self::MAX_LOG2SIZE`]).
    pub fn from_reg(value: u32, log2size: u8) -> Self {
        let qs = log2size.min(Self::MAX_LOG2SIZE);
        let index_mask = (1u32 << qs) - 1;
        Self { index: value & index_mask, wrap: value & (1u32 << qs) != 0 }
    }

    /// The WR/RD bits for this pointer (the caller merges the register's other fields).
    pub fn to_reg(self, log2size: u8) -> u32 {
        let qs = log2size.min(Self::MAX_LOG2SIZE);
        let index_mask = (1u32 << qs) - 1;
        (self.index & index_mask) | (u32::from(self.wrap) << qs)
    }

    /// The pointer after one more entry: the index wraps to 0 and the flag toggles at the end.
    pub fn next(self, log2size: u8) -> Self {
        let qs = log2size.min(Self::MAX_LOG2SIZE);
        let index_mask = (1u32 << qs) - 1;
        let index = (self.index & index_mask).wrapping_add(1);
        if index > index_mask {
            Self { index: 0, wrap: !self.wrap }
        } else {
            Self { index, wrap: self.wrap }
        }
    }

    /// No entries between CONS and PROD.
    pub fn is_empty(prod: Self, cons: Self) -> bool {
        prod == cons
    }

    /// Every entry between CONS and PROD is in use.
    pub fn is_full(prod: Self, cons: Self) -> bool {
        prod.index == cons.index && prod.wrap != cons.wrap
    }

    /// The number of entries between CONS and PROD, for a queue of 2^`log2size` entries.
    pub fn occupancy(prod: Self, cons: Self, log2size: u8) -> u32 {
        let qs = log2size.min(Self::MAX_LOG2SIZE);
        let span = 1u32 << (qs + 1);
        let p = prod.to_reg(qs);
        let c = cons.to_reg(qs);
        p.wrapping_sub(c) & (span - 1)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn one_entry_queue_is_only_a_wrap_flag() {
        // §6.3.27: if QS == 0, zero bits of index are present and the wrap flag is bit 0.
        let p = QueuePointer::from_reg(1, 0);
        assert_eq!(p, QueuePointer { index: 0, wrap: true });
        assert_eq!(p.next(0), QueuePointer { index: 0, wrap: false });
        assert!(QueuePointer::is_full(p, QueuePointer::default()));
    }

    proptest! {
        #[test]
        fn pointer_arithmetic(start in any::<u32>(), qs in 0u8..=19, steps in 0u32..2000) {
            let cons = QueuePointer::from_reg(start, qs);
            let mut prod = cons;
            for _ in 0..steps {
                prod = prod.next(qs);
            }
            let size = 1u32 << qs;
            let used = steps % (2 * size);
            prop_assert_eq!(QueuePointer::occupancy(prod, cons, qs), used);
            prop_assert_eq!(QueuePointer::is_empty(prod, cons), used == 0);
            prop_assert_eq!(QueuePointer::is_full(prod, cons), used == size);
            prop_assert_eq!(QueuePointer::from_reg(prod.to_reg(qs), qs), prod);
        }
    }
}
