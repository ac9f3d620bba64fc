"""Reading a model's state: the logit lens and the Fourier spectrum of its embeddings."""
