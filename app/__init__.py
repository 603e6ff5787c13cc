"""The Streamlit chat app over the index: `streamlit run app/chat.py` (or `python -m app`)."""
