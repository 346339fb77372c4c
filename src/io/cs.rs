//! cryoSPARC `.cs` particle files (numpy structured arrays).
