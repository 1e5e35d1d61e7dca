def value_and_grad(): pass
def average_gradients(): pass
