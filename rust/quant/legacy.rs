//! The legacy block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the activation type Q8_1.
