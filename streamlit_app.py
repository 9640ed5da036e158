"""jsae explorer (placeholder until the app issue lands)."""

import streamlit as st

st.set_page_config(page_title="jsae explorer", layout="wide")
st.title("jsae explorer")
st.write("Causal sparsity of JSAE Jacobians. The full explorer is under construction.")
