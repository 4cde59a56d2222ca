"""The job of `nnrun train configs/iris_mlp.yaml`, written as the plain PyTorch script a tutorial would show.

bench/run.py times this script's whole process against nnrun's: iris from scikit-learn, the same 90/30/30
stratified split, scaling fitted on train, MLP 4-10-3, SGD with momentum, StepLR, a val pass per epoch, the
best weights by val loss, a test pass, and the weights saved. It writes no plots.

    python bench/plain_iris.py OUT_DIR [EPOCHS]
"""

import sys
from pathlib import Path

import torch
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from torch import nn

out, epochs = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 200
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

x, y = load_iris(return_X_y=True)
rest, test = train_test_split(range(len(y)), test_size=0.2, random_state=0, stratify=y)
train, val = train_test_split(rest, test_size=0.25, random_state=0, stratify=y[rest])
mean, std = x[train].mean(axis=0), x[train].std(axis=0)
x = torch.tensor((x - mean) / std, dtype=torch.float32)
y = torch.tensor(y)
x_train, y_train, x_val, y_val, x_test, y_test = x[train], y[train], x[val], y[val], x[test], y[test]

model = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.5)
loss_fn = nn.CrossEntropyLoss()
best, best_state = float("inf"), None
for epoch in range(epochs):
    model.train()
    order = torch.randperm(len(x_train))
    for start in range(0, len(order), 16):
        batch = order[start:start + 16]
        loss = loss_fn(model(x_train[batch]), y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        val_loss = loss_fn(model(x_val), y_val).item()
    if val_loss < best:
        best, best_state = val_loss, {k: v.clone() for k, v in model.state_dict().items()}
    scheduler.step()
    print(f"epoch {epoch + 1} val_loss {val_loss:.4f}")

model.load_state_dict(best_state)
with torch.no_grad():
    accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
torch.save(model.state_dict(), out / "model.pth")
print(f"test accuracy {accuracy:.3f}")
